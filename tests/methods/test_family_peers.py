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
import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import camkit
from camkit import seeds
from camkit.maps import normalise, upsample

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


def stage(model: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """The output of layer `name` for `x`."""
    kept = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, i, o: kept.append(o))
    with torch.no_grad():
        model(x)
    handle.remove()
    return kept[0]


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


@pytest.fixture(scope="module")
def big_head(resnet) -> nn.Module:
    """The resnet with a head 1000 times larger: gradients large next to peers' epsilons."""
    model = copy.deepcopy(resnet[0])
    with torch.no_grad():
        model.fc.weight *= 1000
    return model


def test_shapleycam_with_rest_equals_grad_cam(resnet) -> None:
    model, x, classes = resnet
    ours = camkit.ShapleyCAM(model, layer="layer4")(x, targets=classes)
    rest = [targets_module.ClassifierOutputReST(c) for c in classes]
    theirs = pytorch_grad_cam.ShapleyCAM(model, [model.layer4])(x, rest)
    assert difference(ours.maps[:, 0], theirs, "ShapleyCAM (ReST) vs pytorch-grad-cam") < 5e-5
    # The Hessian term matters with ReST: ShapleyCAM is not Grad-CAM here ...
    plain = camkit.GradCAM(model, layer="layer4")(x, targets=camkit.targets.ReST(classes))
    assert float((plain.maps - ours.maps).abs().amax()) > 1e-3
    # ... and vanishes with the logit, piecewise linear in layer4's output.
    logit = camkit.ShapleyCAM(model, layer="layer4", rest=False)(x, targets=classes)
    gradcam = camkit.GradCAM(model, layer="layer4")(x, targets=classes)
    torch.testing.assert_close(logit.maps, gradcam.maps)


def test_counterfactual_gradcam_by_hand() -> None:
    # A = x itself (2 channels, 2 x 2), score_0 = mean(A_0) - mean(A_1): dS/dA = +-1/4, so the
    # counterfactual weights are -1/4 and +1/4 and the map is ReLU(-A_0 / 4 + A_1 / 4).
    head = nn.Linear(2, 1, bias=False)
    head.weight.data = torch.tensor([[1.0, -1.0]])
    model = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]]])
    result = camkit.CounterfactualGradCAM(model, layer="0")(x, targets=0)
    assert result.raw[0][0, 0].tolist() == [[0.0, 0.0], [0.0, 0.5]]
    factual = camkit.GradCAM(model, layer="0")(x, targets=0)
    assert factual.raw[0][0, 0].tolist() == [[0.25, 0.0], [0.0, 0.0]]


def test_finercam_equals_torchcam_and_grad_cam(resnet) -> None:
    model, x, classes = resnet
    ours = camkit.FinerCAM(model, layer="layer4")(x, targets=classes)
    with torchcam_methods.FinerCAM(model, "layer4", input_shape=(3, 64, 64)) as extractor:
        scores = model(x)
        (theirs,) = extractor(class_idx=classes, scores=scores)
    got = normalise(ours.raw[0])[:, 0]
    assert difference(got, theirs.detach(), "Finer-CAM vs torchcam") < 1e-5
    softmax = camkit.FinerCAM(model, layer="layer4", weighting="softmax", alpha=1.0)
    ours = softmax(x, targets=classes)
    theirs = pytorch_grad_cam.FinerCAM(model, [model.layer4])(x, target_idx=None)
    assert difference(ours.maps[:, 0], theirs, "Finer-CAM (softmax) vs pytorch-grad-cam") < 5e-5


def test_refinecam_equals_grad_cam(big_head, resnet) -> None:
    x, classes = resnet[1], resnet[2]
    layers = ["layer2", "layer3", "layer4"]
    ours = camkit.RefineCAM(big_head, layer=layers)(x, targets=classes)
    modules = [big_head.get_submodule(name) for name in layers]
    theirs = pytorch_grad_cam.RefineCAM(big_head, modules)(x, class_targets(classes))
    assert difference(ours.maps[:, 0], theirs, "RefineCAM vs pytorch-grad-cam") < 5e-5
    automatic = camkit.RefineCAM(big_head)(x, targets=classes)
    assert automatic.layers == tuple(layers)
    torch.testing.assert_close(automatic.maps, ours.maps)


def test_multi_layer_ablation_equals_grad_cam(resnet) -> None:
    # pytorch-grad-cam scales each layer's map to [0, 1] at the layer's size, then upsamples and
    # averages; camkit upsamples first (bilinear upsampling does not keep a map's extremes, so the
    # two orders weigh the layers slightly differently: shown, then matched by hand).
    model, x, classes = resnet
    layers = ["layer3", "layer4"]
    ours = camkit.AblationCAM(model, layer=layers)(x, targets=classes)
    theirs = pytorch_grad_cam.AblationCAM(model, [model.get_submodule(n) for n in layers])(
        x, class_targets(classes)
    )
    difference(ours.maps[:, 0], theirs, "multi-layer Ablation-CAM vs pytorch-grad-cam")
    theirs_order = normalise(
        torch.stack([upsample(normalise(r), (64, 64)) for r in ours.raw]).mean(dim=0)
    )
    assert difference(theirs_order[:, 0], theirs, "... scaled at the layers' sizes") < 5e-5


def test_kpca_projection_equals_scikit_learn(resnet) -> None:
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    model, x, _ = resnet
    a = stage(model, x, "layer3")
    for kernel in ("sigmoid", "rbf", "poly", "linear", "cosine"):
        ours = camkit.methods.eigen.kernel_component(a.double(), kernel)
        theirs = torch.as_tensor(get_2d_projection_kernel(a.numpy(), kernel)).double()
        sign = torch.sign((ours * theirs).flatten(1).sum(dim=1)).reshape(-1, 1, 1)
        scale = theirs.abs().amax()
        value = difference(
            ours * sign / scale, theirs / scale, f"KPCA ({kernel}) vs sklearn, up to sign"
        )
        assert value < 1e-4
    linear = camkit.KPCACAM(model, layer="layer3", kernel="linear")(x)
    eigen = camkit.EigenCAM(model, layer="layer3")(x)
    torch.testing.assert_close(linear.maps, eigen.maps, atol=1e-4, rtol=0)


def test_seg_eigen_cam_equals_grad_cam(resnet) -> None:
    model, x, classes = resnet
    ours = camkit.SegEigenCAM(model, layer="layer3")(x, targets=classes)
    theirs = pytorch_grad_cam.SegEigenCAM(model, [model.layer3])(x, class_targets(classes))
    assert difference(ours.maps[:, 0], theirs, "Seg-Eigen-CAM vs pytorch-grad-cam") < 5e-5


def test_fem_follows_the_paper_and_their_variant_equals_grad_cam(resnet) -> None:
    model, x, _ = resnet
    theirs = pytorch_grad_cam.FEM(model, [model.layer3])(x, None)
    share = camkit.FEM(model, layer="layer3", weights="share")(x)
    assert difference(share.maps[:, 0], theirs, "FEM (share) vs pytorch-grad-cam") < 5e-5
    paper = camkit.FEM(model, layer="layer3")(x)
    departure = difference(paper.maps[:, 0], theirs, "FEM (the paper's mean weights) vs theirs")
    assert departure > 1e-2  # a different map, on purpose (see the module's docstring)
    a = stage(model, x, "layer3")
    mean = a.mean(dim=(2, 3), keepdim=True)
    by_hand = (mean * (a > mean + 2 * a.std(dim=(2, 3), correction=0, keepdim=True))).sum(1)
    torch.testing.assert_close(paper.raw[0][:, 0], by_hand.clamp_min(0))


def test_dff_factorises_as_well_as_scikit_learn(resnet) -> None:
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import dff

    model, x, classes = resnet
    a = stage(model, x, "layer3")
    one = a[:1]
    v = one[0].flatten(1) - one[0].flatten(1).amin(dim=1, keepdim=True)  # what both factorise
    offset = one[0].flatten(1).amin(dim=1, keepdim=True)

    def error(concepts: torch.Tensor, maps: torch.Tensor) -> float:
        return float((v - (concepts - offset) @ maps.flatten(1)).norm() / v.norm())

    w, h = camkit.methods.activation.factorise(one, 4)
    ours = error(w[0], h[0])
    concepts, maps = dff(one.numpy().copy(), n_components=4)
    theirs = error(torch.as_tensor(concepts).float(), torch.as_tensor(maps[0]).float())
    print(f"DFF relative reconstruction error: camkit {ours:.4f}, scikit-learn NMF {theirs:.4f}")
    assert ours <= theirs * 1.05
    result = camkit.DeepFeatureFactorization(model, layer="layer4", concepts=4)(x, targets=classes)
    assert result.maps.shape == (2, 1, 64, 64)


def test_random_cam_equals_grad_cam_with_the_same_weights(resnet, monkeypatch) -> None:
    model, x, classes = resnet
    with warnings.catch_warnings():  # random weights may leave a map empty
        warnings.simplefilter("ignore", camkit.CamkitWarning)
        ours = camkit.RandomCAM(model, layer="layer4", seed=5)(x, targets=classes)
    drawn = torch.rand((2, 1, 512), generator=seeds.generator(5)) * 2 - 1
    monkeypatch.setattr(
        pytorch_grad_cam.random_cam.np.random, "uniform", lambda *a, **k: drawn[:, 0].numpy()
    )
    theirs = pytorch_grad_cam.RandomCAM(model, [model.layer4])(x, class_targets(classes))
    assert difference(ours.maps[:, 0], theirs, "RandomCAM vs pytorch-grad-cam, same weights") < 5e-5


def test_sobel_equals_opencv() -> None:
    from pytorch_grad_cam.sobel_cam import sobel_cam

    generator = torch.Generator().manual_seed(0)
    # gray (R = G = B), so OpenCV's gray conversion is exact; values small enough not to saturate
    gray = (torch.rand(24, 20, 1, generator=generator) * 50).round().to(torch.uint8)
    image = gray.expand(24, 20, 3).contiguous()
    theirs = torch.as_tensor(sobel_cam(image.numpy())).double()
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = image.permute(2, 0, 1)[None].double()
    ours = camkit.Sobel(model.double())(x)
    # OpenCV rounds to 8 bits twice: within one level of 255 after scaling
    assert (
        difference(ours.maps[0, 0], theirs / theirs.amax(), "Sobel vs OpenCV") < 2 / theirs.amax()
    )


@pytest.fixture(scope="module")
def full_size_net() -> nn.Module:
    """A net whose layer "3" has the input's size: Score-CAM masks need no upsampling, so the
    order of scaling and upsampling (torchcam scales first) cannot differ."""
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    ).eval()


def test_iscam_equals_torchcam(full_size_net) -> None:
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    ours = camkit.ISCAM(full_size_net, layer="3", samples=4)(x, targets=[1, 2])
    with torchcam_methods.ISCAM(full_size_net, "3", input_shape=(3, 12, 12), num_samples=4) as ex:
        full_size_net(x)
        (theirs,) = ex(class_idx=[1, 2])
    assert difference(normalise(ours.raw[0])[:, 0], theirs, "IS-CAM vs torchcam") < 1e-5


def test_sscam_equals_torchcam_with_the_same_noise(full_size_net, monkeypatch) -> None:
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    ours = camkit.SSCAM(full_size_net, layer="3", samples=5, sigma=0.3, seed=7)(x, targets=[1, 2])
    with torchcam_methods.SSCAM(
        full_size_net, "3", input_shape=(3, 12, 12), num_samples=5, std=0.3
    ) as extractor:
        generator = seeds.generator(7)  # the noise camkit draws, in the order it draws it
        monkeypatch.setattr(
            extractor._distrib,
            "sample",
            lambda shape: torch.randn(shape, generator=generator) * 0.3,
        )
        full_size_net(x)
        (theirs,) = extractor(class_idx=[1, 2])
    assert difference(normalise(ours.raw[0])[:, 0], theirs, "SS-CAM vs torchcam, same noise") < 1e-5
    quiet = camkit.SSCAM(full_size_net, layer="3", samples=2, sigma=0.0)(x, targets=[1, 2])
    score_cam = camkit.ScoreCAM(full_size_net, layer="3")(x, targets=[1, 2])
    torch.testing.assert_close(quiet.maps, score_cam.maps)


def test_sess_equals_grad_cam(resnet) -> None:
    model, x, classes = resnet
    ours = camkit.SESS(model, layer="layer3", num_scales=3)(x, targets=classes)
    theirs = pytorch_grad_cam.SESS(model, [model.layer3], num_scales=3)(x, class_targets(classes))
    assert difference(ours.maps[:, 0], theirs, "SESS vs pytorch-grad-cam") < 1e-4


def test_binary_and_similarity_targets_equal_grad_cam(resnet) -> None:
    model, x, _ = resnet
    binary = copy.deepcopy(model)
    torch.manual_seed(0)  # a head for which both classes have evidence in these images
    binary.fc = nn.Linear(512, 1)
    for chosen in (0, 1):
        ours = camkit.GradCAM(binary, layer="layer4")(x, targets=camkit.targets.Binary(chosen))
        target = targets_module.BinaryClassifierOutputTarget(chosen)
        theirs = pytorch_grad_cam.GradCAM(binary, [binary.layer4])(x, [target, target])
        assert (
            difference(ours.maps[:, 0], theirs, f"binary class {chosen} vs pytorch-grad-cam") < 5e-5
        )
    predicted = camkit.GradCAM(binary, layer="layer4")(x, targets=camkit.targets.Binary())
    assert predicted.targets[:, 0].tolist() == (binary(x)[:, 0] > 0).long().tolist()

    embedder = copy.deepcopy(model)
    embedder.fc = nn.Identity()
    with torch.no_grad():
        reference = embedder(x.flip(0))  # each image against the other's embedding
    ours = camkit.GradCAM(embedder, layer="layer4")(x, targets=camkit.targets.Similarity(reference))

    def similar_to(r: torch.Tensor):  # pytorch-grad-cam takes any callable of one output row
        return lambda row: torch.nn.functional.cosine_similarity(row, r, dim=0)

    similar = [similar_to(r) for r in reference]
    theirs = pytorch_grad_cam.GradCAM(embedder, [embedder.layer4])(x, similar)
    assert (
        difference(ours.maps[:, 0], theirs, "similarity vs pytorch-grad-cam with a cosine target")
        < 5e-5
    )
    torch.testing.assert_close(
        ours.scores[:, 0], torch.nn.functional.cosine_similarity(embedder(x), reference).detach()
    )
