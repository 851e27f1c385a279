from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from camkit.layers import find_spatial_layer, resolve_layers, unwrap
from helpers.nets import gap_net


def test_names_modules_brackets_and_lists() -> None:
    model = torchvision.models.vgg11()
    conv = model.features[18]
    for spec in ("features.18", "features[18]", conv, "module.features.18"):
        assert resolve_layers(model, spec) == [("features.18", conv)]
    assert [n for n, _ in resolve_layers(model, ["features.3", model.features[8]])] == [
        "features.3",
        "features.8",
    ]


@pytest.mark.parametrize(
    ("spec", "error", "pattern"),
    [
        (
            "layer5",
            ValueError,
            r"no layer named 'layer5' in ResNet; closest names: 'layer4', 'layer3'",
        ),
        ("", ValueError, "no layer named ''"),
        ([], ValueError, "empty list"),
        (nn.Conv2d(1, 1, 1), ValueError, "Conv2d is not part of the model ResNet"),
        (3, TypeError, "dotted name or an nn.Module, not int"),
    ],
)
def test_bad_layer_specs(spec, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        resolve_layers(torchvision.models.resnet18(), [spec] if spec == 3 else spec)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (torchvision.models.resnet18, "layer4"),
        (torchvision.models.vgg11, "features"),
        (torchvision.models.densenet121, "features"),
        (torchvision.models.mobilenet_v3_small, "features"),
        (gap_net, "3"),
    ],
)
def test_automatic_layer_is_the_last_spatial_one(build, expected) -> None:
    assert find_spatial_layer(build().eval(), torch.rand(2, 3, 64, 64)) == expected


def test_automatic_layer_for_signals_and_volumes() -> None:
    assert find_spatial_layer(gap_net(dims=1), torch.rand(1, 3, 20)) == "3"
    assert find_spatial_layer(gap_net(dims=3), torch.rand(1, 3, 4, 5, 6)) == "3"


def test_automatic_layer_skips_modules_that_run_twice() -> None:
    class SharedReLU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.act = nn.ReLU()
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.act(self.act(self.conv(x))).mean(dim=(2, 3)))

    assert find_spatial_layer(SharedReLU(), torch.rand(1, 3, 8, 8)) == "conv"


def test_no_spatial_layer_is_a_clear_error() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ValueError, match=r"pass layer=\.\.\. explicitly"):
        find_spatial_layer(mlp, torch.rand(1, 3, 2, 2))


def test_unwrap_data_parallel() -> None:
    model = gap_net()
    assert unwrap(nn.DataParallel(nn.DataParallel(model))) is model
    assert unwrap(model) is model


def test_a_layer_rule_of_yours_is_tried_first_and_comes_out_again() -> None:
    from camkit.layers import LayerRule, add_layer_rule, layer_rules, remove_layer_rule

    net = gap_net()  # convolutions "0" and "2", ReLUs "1" and "3"
    x = torch.rand(1, 3, 12, 10)
    assert find_spatial_layer(net, x) == "3"
    family = "gap nets: the first block"
    rule = LayerRule(family, lambda m: m is net, layer="[01]", layout="spatial")
    add_layer_rule(rule)
    try:
        assert layer_rules()[0] is rule
        assert find_spatial_layer(net, x) == "1"  # the last layer the rule keeps
        assert find_spatial_layer(gap_net(), x) == "3"  # another model: not its family
    finally:
        remove_layer_rule(family)
    assert rule not in layer_rules()
    assert find_spatial_layer(net, x) == "3"


def test_a_rule_that_keeps_no_layer_is_passed_over() -> None:
    from camkit.layers import LayerRule, add_layer_rule, remove_layer_rule

    net = gap_net()
    add_layer_rule(LayerRule("nothing", lambda m: True, layer="no.such.*"))
    try:
        assert find_spatial_layer(net, torch.rand(1, 3, 12, 10)) == "3"
    finally:
        remove_layer_rule("nothing")


def test_leading_tokens_come_from_the_model_where_it_says() -> None:
    """timm's ViT with four registers and no class token: 4 leading tokens, which no count
    guessed from the shape gives (0, 1, 2 or 5); the model's num_prefix_tokens says it."""
    import timm

    from camkit.layouts import Layout, leading_tokens, token_grid

    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_base_patch16_reg4_gap_256",
        img_size=64,
        depth=2,
        embed_dim=64,
        num_heads=2,
        num_classes=3,
    ).eval()
    assert leading_tokens(vit) == 4
    assert token_grid(4 + 16, (64, 64)) is None  # guessing fails
    assert token_grid(4 + 16, (64, 64), leading=4) == (4, (4, 4))
    tokens = torch.arange(20.0).view(1, 20, 1)
    assert Layout.of(vit).spatial(tokens, (64, 64))[0, 0].flatten().tolist() == list(range(4, 20))
    assert find_spatial_layer(vit, torch.rand(1, 3, 64, 64)) == "blocks"


def test_hiera_tokens_are_put_back_in_order_as_timm_does() -> None:
    """Hiera keeps earlier blocks' tokens in its unrolled order; camkit lays them on the grid
    with the model's own reroll, as timm's forward_intermediates does (row-major would be
    wrong)."""
    import timm

    from camkit.layouts import Layout

    torch.manual_seed(0)
    hiera = timm.create_model("hiera_tiny_224", img_size=64, num_classes=3).eval()
    x = torch.rand(1, 3, 64, 64)
    kept = {}
    handle = hiera.blocks[2].register_forward_hook(lambda m, i, o: kept.setdefault("t", o))
    with torch.no_grad():
        intermediates = hiera.forward_intermediates(x, indices=[1], intermediates_only=True)
        hiera(x)
    handle.remove()
    ours = Layout.of(hiera).spatial(kept["t"], (64, 64), "blocks.2")
    torch.testing.assert_close(ours, intermediates[0])  # stage 1 ends at block 2
    row_major = kept["t"].transpose(1, 2).unflatten(2, ours.shape[2:])
    assert float((row_major - ours).abs().max()) > 0.1


def test_volume_tokens_lie_on_a_3d_grid_and_video_keeps_its_time_axis() -> None:
    from camkit.layouts import grid_ambiguous, patch_grid

    assert patch_grid(64, (32, 32, 32)) == (4, 4, 4)  # cubes: one stride on every axis
    assert patch_grid(8 * 7 * 7, (16, 224, 224)) == (8, 7, 7)  # a video: finest time first
    assert grid_ambiguous(8 * 7 * 7, (16, 224, 224))
    assert not grid_ambiguous(64, (32, 32, 32))
    video = torchvision.models.video.r3d_18(num_classes=3).eval()
    x = torch.rand(1, 3, 8, 32, 32)
    assert find_spatial_layer(video, x) == "layer3"  # layer4 has one time step for 8 frames
    assert find_spatial_layer(video, torch.rand(1, 3, 16, 64, 64)) == "layer4"


def test_no_candidate_on_a_skip_path_inside_an_attention_or_padding() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.main = nn.Conv2d(4, 4, 4, stride=2)
            self.pool_skip = nn.MaxPool2d(2)  # finishes last: on the skip path
            self.pad = nn.ZeroPad2d(1)  # a larger grid: never a candidate

        def forward(self, x):
            return self.main(self.pad(x)) + self.pool_skip(x)

    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        Block(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    from camkit.layers import choose_layer

    x = torch.rand(1, 3, 16, 16)
    assert "1.pad" not in [c.name for c in __import__("camkit").layers.candidates(net, x)]
    assert choose_layer(net, x).names == ("1",)


def test_an_output_no_rule_knows_gets_a_layer_and_a_warning_that_names_it() -> None:
    import warnings

    import camkit

    class Boxes(nn.Module):  # some detector's (B, N, 6) output, in no format camkit reads
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
            self.head = nn.Conv2d(8, 6, 1)

        def forward(self, x):
            return self.head(self.body(x)).flatten(2).transpose(1, 2)

    torch.manual_seed(0)
    model = Boxes().eval()
    x = torch.rand(2, 3, 12, 12)
    explainer = camkit.GradCAMElementWise(model)
    with pytest.warns(camkit.CamkitWarning, match=r"explains layer 'body' of Boxes, chosen as"):
        result = explainer(x, targets=lambda out: out[:, 0, 4:5])
    assert result.layers == ("body",)
    with warnings.catch_warnings():
        warnings.simplefilter("error", camkit.CamkitWarning)  # said once per explainer
        explainer(x, targets=lambda out: out[:, 0, 4:5])


def test_a_patch_embedding_whose_blocks_cannot_be_placed_is_refused() -> None:
    class Unplaced(nn.Module):  # 3 leading tokens: neither said by the model nor guessed
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 4, stride=4)
            self.lead = nn.Parameter(torch.zeros(1, 3, 8))
            self.block = nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            tokens = self.block(torch.cat([self.lead.expand(len(x), -1, -1), tokens], 1))
            return self.head(tokens.mean(1))

    with pytest.raises(ValueError, match=r"after 'patch' output \(B, N, 8\) tokens that camkit"):
        find_spatial_layer(Unplaced().eval(), torch.rand(1, 3, 16, 16))


def test_an_ultralytics_yolo_object_is_looked_into() -> None:
    ultralytics = pytest.importorskip("ultralytics")
    wrapper = ultralytics.YOLO("yolov8n.yaml")
    assert unwrap(wrapper) is wrapper.model
    assert find_spatial_layer(wrapper.eval(), torch.rand(1, 3, 64, 64)) == [
        "model.15",
        "model.18",
        "model.21",
    ]
