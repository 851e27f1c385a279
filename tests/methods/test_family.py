"""The rest of the family against plain references, on CNNs and a token model."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import camkit
from helpers.family_reference import ablationcam, eigencam, gradient_maps, scorecam
from helpers.nets import ATTENTION_METHODS, gap_net, net_for

GRADIENT_RULES = ["hirescam", "gradcam-elementwise", "xgradcam", "layercam", "eigengradcam"]


def identity(t: torch.Tensor) -> torch.Tensor:
    return t


def vit_grid(tokens: torch.Tensor) -> torch.Tensor:
    """torchvision ViT tokens (B, 1 + 4 * 4, C): drop the class token, (B, C, 4, 4)."""
    return tokens[:, 1:].transpose(1, 2).unflatten(2, (4, 4))


def random_head(model: nn.Module) -> nn.Module:
    """torchvision initialises a ViT's head to zeros: every score and gradient would be 0."""
    if hasattr(model, "heads"):
        nn.init.normal_(model.heads.head.weight, std=0.2)
    return model


@pytest.fixture(scope="session")
def small_vit() -> nn.Module:
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    )
    return random_head(vit).double().eval()


class SkipNet(nn.Module):
    """A small CNN with a residual block before the explained layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.top = nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(12, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        features = self.top(stem + self.block(stem))
        return self.head(features.mean(dim=(2, 3)))


def cases(zoo, small_vit):
    x_cnn = torch.randn(
        2, 3, 96, 80, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    x_vit = torch.randn(
        2, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    return {
        "resnet18.layer4": (zoo["resnet18"], "layer4", x_cnn, identity),
        "resnet18.layer3": (zoo["resnet18"], "layer3", x_cnn, identity),
        "vgg11.features.18": (zoo["vgg11"], "features.18", x_cnn, identity),
        "vit.encoder_layer_1.ln_1": (
            small_vit,
            "encoder.layers.encoder_layer_1.ln_1",
            x_vit,
            vit_grid,
        ),
    }


@pytest.mark.parametrize(
    "case", ["resnet18.layer4", "resnet18.layer3", "vgg11.features.18", "vit.encoder_layer_1.ln_1"]
)
def test_gradient_rules_match_plain_references(zoo, small_vit, case) -> None:
    model, layer, x, grid = cases(zoo, small_vit)[case]
    with torch.no_grad():
        classes = model(x).topk(2).indices.tolist()
    reference = gradient_maps(model, model.get_submodule(layer), x, classes, grid)
    for method in GRADIENT_RULES:
        result = camkit.explain(model, x, method, layer=layer, targets=torch.tensor(classes))
        expected = reference[method]
        assert float(expected.abs().amax()) > 0, method
        error = (result.raw[0] - expected).abs().amax() / expected.abs().amax()
        assert float(error) < 1e-5, (method, float(error))


@pytest.fixture(scope="session")
def forward_only_cases(small_vit):
    x_small = torch.randn(
        2, 3, 12, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    x_vit = torch.randn(
        2, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    return {
        "gap_net": (gap_net().double(), "3", x_small, identity, 1),
        "skip_net": (SkipNet().double().eval(), "top", x_small, identity, 1),
        "vit": (small_vit, "encoder.layers.encoder_layer_0", x_vit, vit_grid, 2),
    }


@pytest.mark.parametrize("case", ["gap_net", "skip_net", "vit"])
def test_forward_only_methods_match_plain_references(forward_only_cases, case) -> None:
    model, layer, x, grid, axis = forward_only_cases[case]
    module = model.get_submodule(layer)
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()
    expected = {
        "eigencam": eigencam(model, module, x, grid),
        "scorecam": scorecam(model, module, x, classes, grid),
        "ablationcam": ablationcam(model, module, x, classes, grid, axis),
    }
    for method, maps in expected.items():
        result = camkit.explain(model, x, method, layer=layer, targets=classes)
        assert float(maps.abs().amax()) > 0, method
        error = (result.raw[0][:, 0] - maps).abs().amax() / maps.abs().amax()
        assert float(error) < 1e-5, (method, float(error))


def test_smooth_gradcam_plus_plus_matches_a_loop_over_noisy_copies() -> None:
    model = gap_net().double()
    x = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    noise = camkit.Noise(copies=4, sigma=0.2, seed=9)
    copies = noise.expand(x).unflatten(0, (4, 2))  # the same noisy inputs, as data
    targets = [1, 3]
    result = camkit.SmoothGradCAMPlusPlus(model, layer="3", copies=4, sigma=0.2, seed=9)(x, targets)
    for b, c in enumerate(targets):
        gs, acts = [], []
        for copy in copies[:, b : b + 1]:
            kept: list[torch.Tensor] = []
            handle = model[3].register_forward_hook(lambda m, i, o, kept=kept: kept.append(o))
            try:
                logits = model(copy)
            finally:
                handle.remove()
            (g,) = torch.autograd.grad(logits[0, c], kept[0])
            gs.append(g[0])
            acts.append(kept[0][0].detach())
        g = torch.stack(gs)
        d1, d2, d3 = g.mean(0), (g**2).mean(0), (g**3).mean(0)
        a = torch.stack(acts).mean(0)
        denominator = 2 * d2 + a.sum(dim=(1, 2))[:, None, None] * d3
        alpha = torch.where(denominator != 0, d2 / denominator, torch.zeros_like(d2))
        weights = (alpha * torch.relu(d1)).sum(dim=(1, 2))
        expected = torch.relu((weights[:, None, None] * a).sum(0))
        torch.testing.assert_close(result.raw[0][b, 0], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"])
def test_smoothing_with_one_noiseless_copy_is_the_plain_method(method, images) -> None:
    model = gap_net()
    plain = camkit.explain(model, images, method, targets=camkit.TopK(2))
    smoothed = camkit.explain(
        model, images, method, targets=camkit.TopK(2), smooth=camkit.Noise(1, 0.0)
    )
    torch.testing.assert_close(smoothed.maps, plain.maps)
    torch.testing.assert_close(smoothed.raw[0], plain.raw[0])


def test_smooth_gradcam_plus_plus_without_noise_is_gradcam_plus_plus(images) -> None:
    model = gap_net()
    plain = camkit.GradCAMPlusPlus(model)(images, camkit.TopK(2))
    smooth = camkit.SmoothGradCAMPlusPlus(model, copies=3, sigma=0.0)(images, camkit.TopK(2))
    torch.testing.assert_close(smooth.raw[0], plain.raw[0])


def test_smoothgrad_averages_the_maps_of_the_copies(images) -> None:
    model = gap_net()
    noise = camkit.Noise(copies=3, sigma=0.3, seed=1)
    smoothed = camkit.GradCAM(model, smooth=noise)(images, targets=[0, 1, 2])
    copies = noise.expand(images).unflatten(0, (3, 3))  # the same noisy inputs, as data
    pre = [camkit.GradCAM(model)(copy, targets=[0, 1, 2]) for copy in copies]
    assert smoothed.targets.tolist() == [[0], [1], [2]]
    assert smoothed.maps.shape == (3, 1, 12, 10)
    # The smoothed map differs from each copy's own map (the noise matters) ...
    assert all(not torch.allclose(smoothed.raw[0], r.raw[0]) for r in pre)
    # ... and lies within the copies' range everywhere (an average of them before the ReLU).
    upper = torch.stack([r.raw[0] for r in pre]).amax(0)
    assert bool((smoothed.raw[0] <= upper + 1e-6).all())


def test_scorecam_memory_cap_and_top_channels(images) -> None:
    model = gap_net()
    full = camkit.ScoreCAM(model, rows_per_pass=1000)(images, camkit.TopK(2))
    capped = camkit.ScoreCAM(model, rows_per_pass=3)(images, camkit.TopK(2))
    torch.testing.assert_close(capped.maps, full.maps)
    torch.testing.assert_close(
        camkit.ScoreCAM(model, channels=16)(images, camkit.TopK(2)).maps, full.maps
    )

    calls = []
    model.register_forward_pre_hook(lambda m, inputs: calls.append(len(inputs[0])))
    top = camkit.ScoreCAM(model, layer="3", channels=4, rows_per_pass=5)(images, camkit.TopK(2))
    assert sum(calls) == 3 + 3 * 4  # the plain pass, then 4 masked inputs per image (not 16)
    assert max(calls) <= 5  # never more masked inputs at once than the cap
    assert top.maps.shape == full.maps.shape


def test_ablation_cam_batch_size_and_skip_connection_error(images) -> None:
    model = gap_net()
    torch.testing.assert_close(
        camkit.AblationCAM(model, rows_per_pass=2)(images).maps,
        camkit.AblationCAM(model, rows_per_pass=4096)(images).maps,
    )
    net = SkipNet().eval()
    with pytest.raises(ValueError, match="skip connection.*whole block"):
        camkit.AblationCAM(net, layer="block")(torch.rand(2, 3, 12, 10))


def test_eigencam_is_never_inverted() -> None:
    model = gap_net()
    for seed in range(5):
        x = torch.randn(4, 3, 12, 10, generator=torch.Generator().manual_seed(seed))
        result = camkit.EigenCAM(model, layer="3")(x, targets=camkit.TopK(2))
        activation_sum = model[:4](x).detach().sum(dim=1)
        for b in range(4):
            m, s = result.raw[0][b, 0].flatten(), activation_sum[b].flatten()
            assert float(torch.corrcoef(torch.stack([m, s]))[0, 1]) > 0
        torch.testing.assert_close(result.maps[:, 0], result.maps[:, 1])  # class-agnostic


def test_contrastive_target(images) -> None:
    model = gap_net()
    result = camkit.HiResCAM(model)(images, targets=camkit.Contrast(2, [0, 1, 3]))
    logits = model(images).detach()
    expected = logits[:, 2] - logits[[0, 1, 2], [0, 1, 3]]
    torch.testing.assert_close(result.scores[:, 0], expected)
    # HiResCAM is linear in the score: its pre-ReLU map is the difference of the two classes'.
    a = model[:4](images).detach()
    w = model[6].weight.detach()
    diff = w[2][None] - w[[0, 1, 3]]  # (B, C)
    expected_map = torch.relu((diff[:, :, None, None] * a).sum(1)) / a[0, 0].numel()
    torch.testing.assert_close(result.raw[0][:, 0], expected_map)


def test_test_time_augmentation(images) -> None:
    model = gap_net()
    explainer = camkit.GradCAM(model)
    plain = explainer(images, targets=[0, 1, 2])
    same = camkit.Augmented(explainer, flip=False, scales=(1.0,))(images, targets=[0, 1, 2])
    torch.testing.assert_close(same.maps, plain.maps)
    flipped = explainer(images.flip(-1), targets=[0, 1, 2]).maps.flip(-1)
    both = camkit.Augmented(explainer, flip=True)(images, targets=[0, 1, 2])
    mean = (plain.maps + flipped) / 2
    low, high = mean.flatten(2).amin(2), mean.flatten(2).amax(2)
    torch.testing.assert_close(
        both.maps, (mean - low[..., None, None]) / (high - low)[..., None, None]
    )
    scaled = camkit.Augmented(explainer, flip=True, scales=(1.0, 1.5))(images)
    assert scaled.maps.shape == plain.maps.shape
    assert scaled.method == "gradcam+tta"
    assert scaled.raw[0].shape == plain.raw[0].shape


@pytest.mark.parametrize("method", sorted(set(camkit.METHODS) - {"activation-sum"}))
@pytest.mark.parametrize("dims", [1, 3])
def test_every_method_on_signals_and_volumes(method, dims) -> None:
    model = gap_net(in_channels=2, dims=dims)
    size = (40,) if dims == 1 else (6, 8, 5)
    x = torch.randn(2, 2, *size, generator=torch.Generator().manual_seed(0))
    if method == "sess":  # windows over scaled images: refused for signals and volumes
        with pytest.raises(ValueError, match="SESS slides windows over images"):
            camkit.explain(model, x, method, targets=camkit.TopK(2))
        return
    if method in ATTENTION_METHODS:  # a convolutional network: no attention to read
        with pytest.raises(ValueError, match=f"{method} explains transformers"):
            camkit.explain(model, x, method, targets=camkit.TopK(2))
        return
    with warnings.catch_warnings():
        if method in MAY_BE_EMPTY:
            warnings.simplefilter("ignore", camkit.CamkitWarning)
        result = camkit.explain(model, x, method, targets=camkit.TopK(2))
    assert result.maps.shape == (2, 2, *size)
    assert torch.isfinite(result.maps).all()
    assert method in MAY_BE_EMPTY or float(result.maps.amax()) == 1.0


# Evidence against the class, and random weights, may be nowhere: an empty map is an answer.
MAY_BE_EMPTY = {"gradcam-counterfactual", "randomcam"}


@pytest.mark.parametrize("method", sorted(set(camkit.METHODS) - {"activation-sum"}))
def test_every_method_with_a_dict_output(method, images) -> None:
    class DictNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net_for(method)

        def forward(self, x):
            return {"logits": self.net(x), "features": x.mean()}

    layer = "3" if camkit.METHODS[method].layer_means == "feature maps" else None
    plain = camkit.explain(net_for(method), images, method, layer=layer, targets=camkit.TopK(2))
    wrapped = camkit.explain(
        DictNet().eval(), images, method, layer=layer and "net.3", targets=camkit.TopK(2)
    )
    torch.testing.assert_close(wrapped.maps, plain.maps)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("build", "named"),
    [
        (torchvision.models.vit_b_16, "encoder.layers.encoder_layer_10"),
        (torchvision.models.swin_t, "features.5"),
    ],
)
def test_torchvision_token_models(build, named) -> None:
    torch.manual_seed(0)
    model = random_head(build(num_classes=5)).eval()
    x = torch.rand(1, 3, 224, 224)
    automatic = camkit.GradCAM(model)(x)
    assert automatic.maps.shape == (1, 1, 224, 224)
    assert float(automatic.maps.amax()) == 1.0
    block = camkit.GradCAM(model, layer=named)(x)
    assert block.raw[0].shape[-2:] == (14, 14)  # ViT-B/16's patch grid; Swin's third stage
    assert float(block.maps.amax()) == 1.0
    if build is torchvision.models.vit_b_16:
        assert automatic.layers == ("encoder.layers.encoder_layer_11.ln_1",)
    else:
        assert automatic.layers == ("permute",)
