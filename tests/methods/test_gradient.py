"""Grad-CAM and Grad-CAM++ against a plain reference, CAM, and true higher derivatives."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import camkit
from helpers.nets import ARCHITECTURES, gap_net
from helpers.reference import reference_maps


def _named(model: nn.Module, name: str) -> nn.Module:
    return dict(model.named_modules())[name]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("which", ["automatic", "earlier"])
def test_matches_plain_reference(zoo, zoo_input, arch: str, which: str) -> None:
    model = zoo[arch]
    _, automatic, earlier = ARCHITECTURES[arch]
    layer = automatic if which == "automatic" else earlier
    with torch.no_grad():  # each image's two best classes: maps with positive evidence
        classes = model(zoo_input).topk(2).indices.tolist()
    reference = reference_maps(model, _named(model, layer), zoo_input, classes)
    for method in ("gradcam", "gradcam++"):
        result = camkit.explain(
            model,
            zoo_input,
            method,
            layer=None if which == "automatic" else layer,
            targets=torch.tensor(classes),
        )
        assert result.layers == (layer,)
        raw = result.raw[0].double()
        expected_raw = reference[f"{method}.raw"]
        scale = expected_raw.abs().amax()
        assert scale > 0
        assert float((raw - expected_raw).abs().amax() / scale) < 1e-9, method
        assert float((result.maps - reference[f"{method}.maps"]).abs().amax()) < 1e-5, method


def test_float32_model_agrees_with_float64_reference(zoo, zoo_input) -> None:
    model32 = torchvision.models.resnet18(num_classes=10).eval()
    model32.load_state_dict({k: v.float() for k, v in zoo["resnet18"].state_dict().items()})
    reference = reference_maps(zoo["resnet18"], zoo["resnet18"].layer4, zoo_input, [[1], [2]])
    result = camkit.GradCAMPlusPlus(model32)(zoo_input.float(), targets=[1, 2])
    assert result.raw[0].dtype == torch.float32
    error = (result.raw[0].double() - reference["gradcam++.raw"]).abs().amax()
    assert float(error / reference["gradcam++.raw"].abs().amax()) < 1e-4


@pytest.mark.parametrize("build", [gap_net, lambda: torchvision.models.resnet18(num_classes=7)])
def test_gradcam_equals_cam_on_gap_linear_head(build, images) -> None:
    torch.manual_seed(0)
    model = build().eval()
    x = images if isinstance(model, nn.Sequential) else torch.randn(2, 3, 70, 90)
    targets = camkit.TopK(3)
    cam = camkit.CAM(model)(x, targets)
    gradcam = camkit.GradCAM(model)(x, targets)
    assert cam.layers == gradcam.layers
    assert torch.equal(cam.targets, gradcam.targets)
    assert float(cam.maps.amax()) == 1.0  # not a trivially zero comparison
    assert float((cam.maps - gradcam.maps).abs().amax()) < 1e-5
    # Before normalisation they differ by exactly 1/Z (alpha = w / Z on such a head).
    area = cam.raw[0].shape[-1] * cam.raw[0].shape[-2]
    torch.testing.assert_close(gradcam.raw[0] * area, cam.raw[0], rtol=1e-4, atol=1e-6)


def test_gradcam_plus_plus_closed_form_equals_true_higher_derivatives() -> None:
    """The seed formula with d2Y, d3Y of Y = exp(S) from autograd, element by element."""
    torch.manual_seed(4)
    stem = nn.Conv2d(2, 3, 3, padding=1)  # its output is A
    head = nn.Sequential(  # piecewise linear from A to S
        nn.Conv2d(3, 4, 1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    model = nn.Sequential(stem, head).double().eval()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    target = 1

    a = stem(x).detach().requires_grad_()
    y = torch.exp(head(a)[0, target])
    (dy,) = torch.autograd.grad(y, a, create_graph=True)
    d2 = torch.zeros_like(a).flatten()
    d3 = torch.zeros_like(a).flatten()
    for i in range(a.numel()):
        (row2,) = torch.autograd.grad(dy.flatten()[i], a, create_graph=True)
        d2[i] = row2.flatten()[i]
        (row3,) = torch.autograd.grad(row2.flatten()[i], a, retain_graph=True, allow_unused=True)
        d3[i] = 0.0 if row3 is None else row3.flatten()[i]
    d2, d3 = d2.view_as(a).detach(), d3.view_as(a).detach()
    assert float(d3.abs().amax()) > 0  # the third derivative really is exercised
    total = a.detach().sum(dim=(2, 3), keepdim=True)
    denominator = 2 * d2 + total * d3
    alpha = torch.where(denominator != 0, d2 / denominator, torch.zeros_like(d2))
    weights = (alpha * torch.relu(dy.detach())).sum(dim=(2, 3))  # (1, C)
    seed_map = torch.relu((weights[:, :, None, None] * a.detach()).sum(dim=1))  # (1, h, w)

    result = camkit.GradCAMPlusPlus(model, layer="0")(x, targets=target)
    # camkit's raw omits exp(S), the positive factor of dY/dA.
    scaled = result.raw[0][0, 0] * torch.exp(result.scores[0, 0].double())
    assert float(seed_map.abs().amax()) > 0
    relative = (scaled - seed_map[0]).abs().amax() / seed_map.abs().amax()
    assert float(relative) < 1e-5


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcam++"])
def test_k_targets_in_one_call_equal_k_calls(method, images) -> None:
    model = gap_net(classes=6)
    together = camkit.explain(model, images, method, targets=camkit.TopK(4))
    assert together.maps.shape == (3, 4, 12, 10)
    for k in range(4):
        alone = camkit.explain(model, images, method, targets=together.targets[:, k])
        torch.testing.assert_close(alone.maps[:, 0], together.maps[:, k], rtol=0, atol=1e-6)
        torch.testing.assert_close(alone.raw[0][:, 0], together.raw[0][:, k], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(alone.scores[:, 0], together.scores[:, k])


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcam++"])
def test_batch_equals_single_inputs(method, images) -> None:
    model = gap_net()
    batch = camkit.explain(model, images, method, targets=[0, 2, 4])
    for b, target in enumerate([0, 2, 4]):
        single = camkit.explain(model, images[b : b + 1], method, targets=target)
        torch.testing.assert_close(single.maps[0], batch.maps[b], rtol=0, atol=1e-6)
        torch.testing.assert_close(single.raw[0][0], batch.raw[0][b], rtol=1e-6, atol=1e-7)


def test_softmax_score_differs_from_logit_and_is_a_probability(images) -> None:
    model = gap_net()
    logit = camkit.GradCAM(model)(images, targets=camkit.TopK(2))
    prob = camkit.GradCAM(model)(images, targets=camkit.TopK(2), score="softmax")
    assert torch.equal(logit.targets, prob.targets)
    expected = logit.outputs.softmax(dim=1).gather(1, logit.targets)
    torch.testing.assert_close(prob.scores, expected)
    assert not torch.allclose(prob.raw[0], logit.raw[0])
