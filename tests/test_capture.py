from __future__ import annotations

import pytest
import torch
from torch import nn

from camkit.capture import capture


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))


def test_capture_keeps_the_output_before_in_place_ops_and_removes_hooks() -> None:
    model = net()
    x = torch.randn(2, 3, 6, 6)
    with capture([("0", model[0])], 2, differentiable=False) as got:
        out = model(x)
    assert not model[0]._forward_hooks
    torch.testing.assert_close(got["0"], model[0](x))
    torch.testing.assert_close(out, model(x))


def test_differentiable_capture_records_only_from_the_layer() -> None:
    model = net()
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    with torch.no_grad(), capture([("1", model[1])], 2, differentiable=True) as got:
        out = model(x)
        assert torch.is_grad_enabled()  # switched on by the hook
        (grad,) = torch.autograd.grad(out.sum(), got["1"])
    assert got["1"].is_leaf
    assert got["1"].requires_grad
    assert grad.shape == got["1"].shape
    assert x.grad is None
    assert all(p.grad is None for p in model.parameters())


def test_capture_errors_and_cleanup() -> None:
    model = net()
    with pytest.raises(ValueError, match="first dimension is not the batch size 3"):  # noqa: SIM117
        with capture([("0", model[0])], 3, differentiable=False):
            model(torch.randn(3, 6, 6))  # a single unbatched image
    assert not model[0]._forward_hooks

    shared = nn.ReLU()
    twice = nn.Sequential(shared, shared)
    with pytest.raises(ValueError, match="ran more than once"):  # noqa: SIM117
        with capture([("0", shared)], 1, differentiable=False):
            twice(torch.randn(1, 2))
    assert not shared._forward_hooks


def test_non_tensor_layer_output_is_rejected() -> None:
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    pair = Pair()
    with pytest.raises(TypeError, match="returns tuple, not a tensor"):  # noqa: SIM117
        with capture([("p", pair)], 1, differentiable=False):
            pair(torch.randn(1, 2))
