"""The models users bring most, from the libraries they train with (ultralytics YOLO,
segmentation-models-pytorch, MONAI, Hugging Face, timm, torchvision), built small with random
weights: the automatic layer by name, the map's shape (time and depth kept), a finite map that
is not constant; the automatic layer never the model's head, a detection head's layers or a
patch embedding (`assert_never_the_head_or_a_patch_embedding`, checked on every model of the
suite's model tests); and the maps equal to the peers that support these models
(pytorch-grad-cam's YOLO EigenCAM and segmentation target, MONAI's Grad-CAM and Grad-CAM++)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import camkit
from camkit.layers import choose_layer, unwrap
from camkit.survey import survey
from camkit.targets import select_output
from helpers.zoo import CONFIGS, assert_never_the_head_or_a_patch_embedding, build, region_target

pytest.importorskip("ultralytics")
pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("monai")


def configs(keep=lambda config: True) -> list[object]:
    return [
        pytest.param(name, marks=[pytest.mark.slow] if config.slow else [])
        for name, config in CONFIGS.items()
        if keep(config)
    ]


def names(layer: str | tuple[str, ...]) -> tuple[str, ...]:
    return (layer,) if isinstance(layer, str) else layer


def target_for(name: str, model: nn.Module, x: torch.Tensor) -> object:
    return region_target(model, x) if CONFIGS[name].target == "region" else None


def test_the_zoo_covers_at_least_forty_configurations_of_every_library() -> None:
    libraries = {c.library for c in CONFIGS.values()}
    assert len(CONFIGS) >= 40
    assert libraries == {"ultralytics", "smp", "monai", "transformers", "timm", "torchvision"}


@pytest.mark.parametrize("name", configs())
def test_the_automatic_layer_by_name_and_a_real_map(name) -> None:
    config = CONFIGS[name]
    model, x = build(config)
    choice = choose_layer(model, x)
    print(f"{name}: {choice.names} ({choice.rule})")
    assert choice.names == names(config.layer)
    assert choice.sure == config.sure
    assert_never_the_head_or_a_patch_embedding(model, x)
    # Element-wise Grad-CAM (sum of ReLU(g * A)) is never cancelled by signs: with random
    # weights, a Grad-CAM of a signed layer can be blank everywhere.
    result = camkit.GradCAMElementWise(model)(x, targets=target_for(name, model, x))
    assert result.layers == names(config.layer)
    assert result.maps.shape == (x.shape[0], 1, *x.shape[2:])  # time and depth kept
    assert torch.isfinite(result.maps).all()
    flat = result.maps.flatten(2)
    assert bool((flat.amax(dim=2) > flat.amin(dim=2)).all()), "a constant map"


SEGMENTERS = configs(lambda c: c.target == "region" and c.library in ("smp", "monai"))


@pytest.mark.parametrize("name", SEGMENTERS)
def test_a_segmenters_map_is_not_its_logit_map(name) -> None:
    """The failure this guards against: at the segmentation head, Grad-CAM of a region is the
    class's logit map itself (its weighted sum before the ReLU has correlation 1 with the
    logits). At the automatic layer it is not."""
    model, x = build(CONFIGS[name])
    target = target_for(name, model, x)
    seen = survey(model, x)
    with torch.no_grad():
        logits = select_output(model(x))[:, 1:2].double()
    kept = []

    class Unrectified(camkit.GradCAM):  # the weighted sum, before the pipeline's ReLU
        def weigh(self, evidence):
            kept.append(super().weigh(evidence))
            return kept[-1]

    def correlation(layer: str | None) -> float:
        kept.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", camkit.CamkitWarning)
            Unrectified(model, layer=layer)(x, targets=target)
        size = logits.shape[2:]
        mode = "bilinear" if len(size) == 2 else "trilinear"
        weighed = torch.nn.functional.interpolate(kept[0].double(), size=size, mode=mode)
        pair = torch.stack([weighed.flatten(), logits.flatten()])
        return float(torch.corrcoef(pair)[0, 1])

    at_head, automatic = correlation(seen.head), correlation(None)
    print(
        f"{name}: correlation with the logit map {at_head:.3f} at the head, "
        f"{automatic:.3f} at the automatic layer"
    )
    assert at_head > 0.95
    assert abs(automatic) < 0.9


# --- the peers that support these models --------------------------------------------------


@pytest.mark.parametrize("name", ["yolov8-detect", "yolo11-detect"])
def test_yolo_eigencam_equals_pytorch_grad_cams(name) -> None:
    """pytorch-grad-cam's YOLO tutorial: EigenCAM at the last layer before the head
    (model.model[-2]); camkit's on the same layer, compared before upsampling, up to the
    principal component's sign (pytorch-grad-cam leaves it to the SVD; camkit fixes it)."""
    from pytorch_grad_cam import EigenCAM

    model, x = build(CONFIGS[name])
    network = unwrap(model)
    layer = network.model[-2]
    kept = {}
    handle = layer.register_forward_hook(lambda m, i, o: kept.setdefault("A", o.detach()))
    with torch.no_grad():
        network(x)
    handle.remove()
    with EigenCAM(model=network, target_layers=[layer]) as theirs:
        projection = theirs.get_cam_image(x, layer, None, kept["A"].numpy(), None, False)
    projection = torch.as_tensor(projection)
    name_of = next(n for n, m in network.named_modules() if m is layer)
    ours = camkit.EigenCAM(model, layer=name_of)(x).raw[0][:, 0]
    signs = torch.sign((projection * ours).flatten(1).sum(1))
    theirs_map = torch.relu(projection * signs[:, None, None])
    difference = float((ours - theirs_map).abs().max() / theirs_map.abs().max())
    print(f"{name}: EigenCAM at {name_of}, max relative difference {difference:.2e}")
    assert difference < 1e-4


@pytest.mark.parametrize("name", ["smp-unet", "smp-fpn", "tv-deeplabv3"])
def test_segmentation_grad_cam_equals_pytorch_grad_cams_semantic_segmentation_target(name):
    """pytorch-grad-cam's segmentation tutorial: SemanticSegmentationTarget(category, mask)
    sums the class's output inside the mask, as camkit's Region does; same layer (camkit's
    automatic one), the final maps compared."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    model, x = build(CONFIGS[name])
    model = model.double()
    x = x.double()
    region = target_for(name, model, x)
    layer = choose_layer(model, x).names[0]
    module = dict(model.named_modules())[layer]

    class Logits(nn.Module):  # torchvision's dict output, as pytorch-grad-cam's tutorial wraps it
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            return select_output(self.inner(images))

    mask = region.masks.numpy().astype(np.float32)
    targets = [SemanticSegmentationTarget(1, mask) for _ in range(len(x))]
    with GradCAM(model=Logits(model), target_layers=[module]) as theirs:
        reference = torch.as_tensor(theirs(x, targets=targets))
    ours = camkit.GradCAM(model)(x, targets=region).maps[:, 0]
    difference = float((ours - reference).abs().max())
    print(f"{name}: Grad-CAM at {layer}, max difference {difference:.2e}")
    assert difference < 1e-4


@pytest.mark.parametrize("dims", [2, 3])
def test_monai_grad_cam_and_grad_cam_plus_plus_equal_camkits(dims) -> None:
    """MONAI's GradCAM equals camkit's once its normaliser (which maps the maximum to 0) is
    inverted. Its GradCAMpp multiplies the gradient by exp(score) (the paper's Y = exp(S)): a
    positive factor per image, which normalising removes; with a batch of several images it
    indexes that score as a (B, B) matrix, which broadcasts over the map's last axes, so it is
    compared one image at a time."""
    from monai.networks.nets import DenseNet
    from monai.visualize import GradCAM, GradCAMpp

    torch.manual_seed(0)
    model = (
        DenseNet(
            spatial_dims=dims,
            in_channels=1,
            out_channels=3,
            init_features=8,
            growth_rate=8,
            block_config=(2, 2, 2, 2),
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        model.class_layers.out.weight *= 10  # MONAI's 1e-7 in Grad-CAM++ becomes negligible
    shape = (2, 1, 96, 64) if dims == 2 else (1, 1, 64, 64, 64)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert choose_layer(model, x).names == ("class_layers.relu",)
    hooked = copy.deepcopy(model)  # MONAI leaves its hooks on the model it explains
    theirs = GradCAM(nn_module=hooked, target_layers="class_layers.relu")(x=x)
    ours = camkit.GradCAM(model)(x).maps
    grad_cam = float((1 - theirs - ours).abs().max())
    plus_plus = max(
        float(
            (
                1
                - GradCAMpp(nn_module=hooked, target_layers="class_layers.relu")(x=x[i : i + 1])
                - camkit.GradCAMPlusPlus(model)(x[i : i + 1]).maps
            )
            .abs()
            .max()
        )
        for i in range(len(x))
    )
    print(f"MONAI {dims}-D: Grad-CAM {grad_cam:.2e}, Grad-CAM++ {plus_plus:.2e}")
    assert grad_cam < 1e-5
    assert plus_plus < 1e-4


def test_monai_grad_cam_plus_plus_mixes_the_images_of_a_batch() -> None:
    """Why MONAI's Grad-CAM++ is compared one image at a time: on a batch of two 2 x 2 maps
    its score's (B, B) matrix scales each map's rows by the other images' exp(score), so its
    maps differ from its own one-image maps (and camkit's, which equal those)."""
    from monai.networks.nets import DenseNet
    from monai.visualize import GradCAMpp

    torch.manual_seed(0)
    model = (
        DenseNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=3,
            init_features=8,
            growth_rate=8,
            block_config=(2, 2, 2, 2),
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        model.class_layers.out.weight *= 10
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cam = GradCAMpp(nn_module=copy.deepcopy(model), target_layers="class_layers.relu")
    batch = cam.compute_map(x).detach()
    alone = torch.cat([cam.compute_map(x[i : i + 1]).detach() for i in range(2)])
    ours = camkit.GradCAMPlusPlus(model)(x).raw[0]
    ratio = alone / ours  # exp(score) per image: constant over each map
    constant = ratio.flatten(1)[:, :1, None, None].expand_as(ratio)
    torch.testing.assert_close(ratio, constant, rtol=1e-5, atol=0)  # up to MONAI's 1e-7
    assert float((batch - alone).abs().max()) > 1e-3
