"""Guided backpropagation changes how ReLUs differentiate, for one call only; FullGrad and the
input-drawn methods refuse what they cannot explain."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camkit
from camkit.methods.guided import guided_relus
from helpers.nets import gap_net


class Functional(nn.Module):
    """The gap net's layers, with the ReLUs written as functions (in place and not)."""

    def __init__(self) -> None:
        super().__init__()
        net = gap_net()
        self.conv1, self.conv2, self.head = net[0], net[2], net[6]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x), inplace=True)
        x = torch.relu(self.conv2(x))
        return self.head(x.mean(dim=(2, 3)))


def _relu_gradient() -> list[float]:
    x = torch.tensor([1.0, -1.0, 2.0], requires_grad=True)
    (torch.relu(x) * torch.tensor([-1.0, 1.0, 1.0])).sum().backward()
    assert x.grad is not None
    return x.grad.tolist()


def test_functional_and_in_place_relus_are_guided_like_modules(images) -> None:
    modules = camkit.GuidedBackprop(gap_net())(images, targets=[0, 1, 2, 3][: len(images)])
    functional = camkit.GuidedBackprop(Functional().eval())(
        images, targets=[0, 1, 2, 3][: len(images)]
    )
    torch.testing.assert_close(functional.maps, modules.maps)
    plain = camkit.explain(gap_net(), images, "gradcam", layer="0")  # differs from guided
    assert not torch.allclose(plain.maps, modules.maps)


def test_guided_rule_never_outlives_the_call(images) -> None:
    assert _relu_gradient() == [-1.0, 0.0, 1.0]
    with guided_relus():
        pass
    assert _relu_gradient() == [-1.0, 0.0, 1.0]

    class Failing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.relu(x)
            raise RuntimeError("boom")

    with pytest.raises(ValueError, match="boom"):
        camkit.GuidedBackprop(Failing().eval())(images)
    assert _relu_gradient() == [-1.0, 0.0, 1.0]  # ordinary ReLU gradients again
    camkit.GuidedBackprop(gap_net())(images)
    assert _relu_gradient() == [-1.0, 0.0, 1.0]


def test_guided_backprop_refuses_a_network_without_relu(images) -> None:
    net = gap_net()
    net[1], net[3] = nn.GELU(), nn.GELU()
    with pytest.raises(ValueError, match="defined for ReLU networks.*GELU"):
        camkit.GuidedBackprop(net)(images)


def test_guided_gradients_are_the_positive_backward_pass() -> None:
    # One ReLU between two linear maps: the guided gradient passes only where the gradient
    # arriving at the ReLU is positive and its input was positive.
    first = nn.Conv2d(1, 2, 1, bias=False)
    first.weight.data = torch.tensor([[[[1.0]]], [[[-1.0]]]])
    second = nn.Conv2d(2, 1, 1, bias=False)
    second.weight.data = torch.tensor([[[[-2.0]], [[3.0]]]])
    model = nn.Sequential(first, nn.ReLU(), second, nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.tensor([[[[1.0, -1.0]]]])  # position 0 feeds channel 0, position 1 channel 1
    result = camkit.GuidedBackprop(model)(x, targets=0)
    # position 0: channel 0 active, gradient -2/2 < 0 -> 0; position 1: channel 1 active,
    # gradient 3/2 > 0 -> passes, times the first weight -1: |-1.5|.
    assert result.raw[0][0, 0].tolist() == [[0.0, 1.5]]


def test_fullgrad_refuses_a_model_without_biases(images) -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).eval()
    with pytest.raises(ValueError, match="FullGrad needs layers that add a bias"):
        camkit.FullGrad(net)(images)


def test_fullgrad_is_complete_on_a_linear_network() -> None:
    # FullGrad's completeness: for a network that is linear in x plus biases, the sum of the
    # input-gradient x input and the bias-gradient x bias terms (before the absolute values)
    # is the score itself.
    conv = nn.Conv2d(1, 2, 1)
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1)).eval()
    x = torch.rand(1, 1, 3, 3)
    x.requires_grad_(True)
    out = model[0](x)
    score = model[3](model[1](out).flatten(1))[0, 0]
    gx, gz = torch.autograd.grad(score, [x, out])
    assert conv.bias is not None
    total = (gx * x).sum() + (gz * conv.bias[None, :, None, None]).sum() + model[3].bias[0]
    torch.testing.assert_close(total, score)
    result = camkit.FullGrad(model)(x.detach(), targets=0)
    assert result.layers == ("input", "0")
