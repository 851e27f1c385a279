"""The methods added in 0.3 against the libraries that ship them, on one model and input.

Each test prints the largest difference of the normalised maps (or of the weights, where a
library returns no comparable map). Departures on purpose are shown, with their reason:

* FEM: pytorch-grad-cam weights each channel by the share of its positions above the
  threshold and sums the activations; the paper (Fuad et al. 2020) sums the binary masks
  weighted by the channel's mean. camkit follows the paper; ``weights="share"`` is theirs.
* Finer-CAM: torchcam follows the paper (``S_c - gamma * mean_j S_j``, gamma 0.6);
  pytorch-grad-cam weights the comparisons by their softmax probabilities and uses alpha 1:
  ``Finer(weighting="softmax", alpha=1)`` is theirs.
* KPCA-CAM, DFF: an eigenvector's sign and a factorisation are not unique: compared up to
  sign, and by reconstruction error.
* SESS: pytorch-grad-cam computes one image at a time with OpenCV resizing and blur; camkit
  batches in torch: the same patches, scores and fusion, compared on fused maps.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import camkit
from camkit.maps import normalise

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
torchcam_methods = pytest.importorskip("torchcam.methods")
captum_attr = pytest.importorskip("captum.attr")


def _random_norms(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="module")
def resnet() -> tuple[nn.Module, torch.Tensor, list[int]]:
    torch.manual_seed(0)
    model = _random_norms(torchvision.models.resnet18(num_classes=10), 1).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()
    return model, x, classes


def difference(ours: torch.Tensor, theirs: object, label: str) -> float:
    theirs = torch.as_tensor(np.asarray(theirs), dtype=torch.float64)
    value = float((ours.double() - theirs).abs().amax())
    print(f"{label}: max |camkit - peer| = {value:.2e}")
    return value


def class_targets(classes: list[int]) -> list[object]:
    return [targets_module.ClassifierOutputTarget(c) for c in classes]


def test_guided_backprop_equals_captum_and_grad_cam(resnet) -> None:
    model, x, classes = resnet
    ours = camkit.GuidedBackprop(model)(x, targets=classes)
    captum = captum_attr.GuidedBackprop(model).attribute(x.clone(), target=classes)
    expected = normalise(captum.detach().abs().amax(dim=1, keepdim=True))
    assert difference(ours.maps, expected, "guided backprop vs Captum") < 1e-5
    guided = pytorch_grad_cam.GuidedBackpropReLUModel(model, device="cpu")
    theirs = torch.stack(
        [torch.as_tensor(guided(x[i : i + 1], c)).permute(2, 0, 1) for i, c in enumerate(classes)]
    )
    expected = normalise(theirs.abs().amax(dim=1, keepdim=True))
    assert difference(ours.maps, expected, "guided backprop vs pytorch-grad-cam") < 1e-5
    assert not any(isinstance(m, type(None)) for m in model.modules())  # their ReLUs are back


def test_guided_gradcam_equals_captum(resnet) -> None:
    model, x, classes = resnet
    ours = camkit.GuidedGradCAM(model, layer="layer3")(x, targets=classes)
    captum = captum_attr.GuidedGradCam(model, model.layer3).attribute(
        x.clone(), target=classes, interpolate_mode="bilinear"
    )
    expected = normalise(captum.detach().abs().amax(dim=1, keepdim=True))
    assert difference(ours.maps, expected, "Guided Grad-CAM vs Captum") < 1e-5


def test_fullgrad_equals_grad_cam(resnet) -> None:
    # pytorch-grad-cam scales each channel by 1 / (max + 1e-7), not small next to the tiny
    # bias-gradients of a random network: a larger head makes gradients large, the epsilon moot.
    model, x, classes = copy.deepcopy(resnet[0]), resnet[1], resnet[2]
    with torch.no_grad():
        model.fc.weight *= 1e4
    ours = camkit.FullGrad(model)(x, targets=classes)
    theirs = pytorch_grad_cam.FullGrad(model, [])(x, class_targets(classes))
    assert difference(ours.maps[:, 0], theirs, "FullGrad vs pytorch-grad-cam") < 5e-5
