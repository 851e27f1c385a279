"""Agreement with grad-cam (pytorch-grad-cam), torchcam and Captum where they share a formula.

Compared at the layer's resolution, before upsampling and normalisation (each library resizes
and normalises differently). Known differences of definition, and how the tests treat them:

* grad-cam adds epsilons to denominators where camkit treats an exact 0 apart: 1e-7 in
  XGrad-CAM and 1e-6 in Grad-CAM++, which is not small next to g^2 when gradients are small (a
  7.7% difference on this random ResNet-18). The model's head is scaled by 1000 here so that
  gradients are large and the epsilons negligible: relative tolerance 1e-4.
* torchcam's GradCAMpp (0.5.0) sums g^3 * A over space in the denominator (the paper has
  sum(A) * g^3) and divides a boolean-indexed copy, so its alpha stays g^2: not compared.
* torchcam's Score-CAM normalises each channel before upsampling it (camkit, like the paper,
  after): masks differ at the edges, maps by 0.3% to 2% here: tolerance 5e-2.
* grad-cam's EigenCAM / EigenGradCAM leave the principal component's sign to the SVD; camkit
  fixes it (positive correlation with the channel sum): compared up to sign.
* grad-cam's Score-CAM upsamples the masks with align_corners=True (camkit and torchcam:
  False), so it is compared with torchcam only.
* torchcam's Smooth Grad-CAM++ takes A from an extra clean pass and draws its own noise: not
  compared.
* HiResCAM on a random Swin's last stage sums g * A over 768 channels to values near 1e-7:
  float32 rounding of that cancelled sum differs between torch and numpy by a few percent of
  the map, so it is compared in float64 (the token layout is the same on both sides).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

import camkit

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
torchcam_methods = pytest.importorskip("torchcam.methods")
captum_attr = pytest.importorskip("captum.attr")


@pytest.fixture(scope="module")
def setting() -> tuple[nn.Module, torch.Tensor, list[int]]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).double().eval()
    with torch.no_grad():
        model.fc.weight *= 1000  # large gradients: the other libraries' epsilons are negligible
    x = torch.randn(2, 3, 96, 80, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        classes = model(x).argmax(1).tolist()
    return model, x, classes


def activations_and_gradients(model: nn.Module, x: torch.Tensor, classes: list[int]):
    kept = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: kept.setdefault("A", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    score = logits.gather(1, torch.tensor(classes)[:, None]).sum()
    (grads,) = torch.autograd.grad(score, kept["A"])
    return kept["A"].detach(), grads


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    theirs = torch.as_tensor(theirs, dtype=torch.float64)
    return float((ours.double() - theirs).abs().amax() / theirs.abs().amax())


GRAD_CAM_NAMES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "gradcam-elementwise": "GradCAMElementWise",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
}


@pytest.mark.parametrize("method", list(GRAD_CAM_NAMES))
def test_grad_cam_package_rules(setting, method) -> None:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x, classes = setting
    a, g = activations_and_gradients(model, x, classes)
    cls = getattr(pytorch_grad_cam, GRAD_CAM_NAMES[method])
    with cls(model=model, target_layers=[model.layer4]) as theirs:
        targets = [ClassifierOutputTarget(c) for c in classes]
        cam = theirs.get_cam_image(x, model.layer4, targets, a.numpy(), g.numpy(), False)
    cam = torch.as_tensor(cam)
    ours = camkit.explain(model, x, method, layer="layer4", targets=classes).raw[0][:, 0]
    if method.startswith("eigen"):  # their sign is the SVD's: compare up to sign
        signs = torch.sign((cam * ours).flatten(1).sum(1))
        cam = cam * signs[:, None, None]
    assert relative_error(ours, torch.relu(cam)) < 1e-4


TORCHCAM_NAMES = {
    "gradcam": ("GradCAM", 1e-4),
    "xgradcam": ("XGradCAM", 1e-4),
    "layercam": ("LayerCAM", 1e-4),
    "scorecam": ("ScoreCAM", 1e-3),
    "cam": ("CAM", 1e-4),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(TORCHCAM_NAMES))
def test_torchcam_rules(setting, method) -> None:
    model, x, classes = setting
    name, tolerance = TORCHCAM_NAMES[method]
    if method == "cam":  # torchcam's CAM multiplies float32 weights with the activations
        model, x = copy.deepcopy(model).float(), x.float()
    cls = getattr(torchcam_methods, name)
    options = {"fc_layer": "fc"} if method == "cam" else {}
    layer = "layer4"
    if method == "scorecam":  # a pass a channel: one input, layer3's 256 channels, float32
        options |= {"batch_size": 64}
        x, classes, layer = x[:1].float(), classes[:1], "layer3"
        model = copy.deepcopy(model).float()
    with cls(model, target_layer=layer, input_shape=(3, 96, 80), **options) as extractor:
        scores = model(x)
        maps = extractor(classes, scores, normalized=False)[0]
    ours = camkit.explain(model, x, method, layer=layer, targets=classes).raw[0][:, 0]
    error = relative_error(ours, maps.detach())
    print(f"{method} at {layer}: relative difference from torchcam {error:.2e}")
    assert error < tolerance


def test_captum_layer_gradcam(setting) -> None:
    model, x, classes = setting
    attribution = captum_attr.LayerGradCam(model, model.layer4).attribute(
        x, target=classes, relu_attributions=True
    )
    ours = camkit.GradCAM(model, layer="layer4")(x, targets=classes).raw[0]
    assert relative_error(ours, attribution.detach()) < 1e-6


def test_hirescam_on_swin_agrees_with_grad_cam_package_and_float32_cancellation_is_why_not():
    """On timm's Swin, HiResCAM at the last stage's output differed from pytorch-grad-cam's by
    about 1e-2 in float32 while Grad-CAM agreed. Neither side lays the tokens out differently
    (the activations and gradients both see are equal): HiResCAM's sum over 768 channels of
    g * A cancels to about 1e-7 from terms far larger, so float32 rounding of the two sums
    (torch's and numpy's) differs by a few percent of the result. In float64 they agree."""
    import timm
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", num_classes=5).eval()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    def difference(dtype: torch.dtype) -> tuple[float, float]:
        net, inputs = copy.deepcopy(model).to(dtype), x.to(dtype)
        classes = net(inputs).argmax(1).tolist()
        channels_last = lambda t: t.permute(0, 3, 1, 2)  # noqa: E731 - Swin's (B, h, w, C)
        layers = [net.layers[3]]
        cam = pytorch_grad_cam.HiResCAM(net, layers, reshape_transform=channels_last)
        with cam:
            theirs = cam(inputs, targets=[ClassifierOutputTarget(c) for c in classes])
        ours = camkit.HiResCAM(net, layer="layers.3")(inputs, targets=classes)
        gap = float((ours.maps[:, 0] - torch.as_tensor(theirs)).abs().max())
        return gap, float(ours.raw[0].abs().max())

    gap32, size32 = difference(torch.float32)
    gap64, _ = difference(torch.float64)
    print(
        f"HiResCAM on Swin vs pytorch-grad-cam: float32 {gap32:.2e} (map values up to "
        f"{size32:.1e}), float64 {gap64:.2e}"
    )
    assert size32 < 1e-5  # the cancelled sum: tiny next to its terms
    assert gap64 < 1e-5
    assert gap32 > 10 * gap64
