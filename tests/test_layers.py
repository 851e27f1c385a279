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
