"""The models people bring: timm and Hugging Face classifiers, torchvision detection and
segmentation, Network-in-Network heads, several inputs. All with random weights, built from
configs: nothing is downloaded."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torchvision
import transformers
from torch import nn

import camkit
from camkit import Region
from camkit.layers import candidates, find_spatial_layer
from helpers.nets import ATTENTION_METHODS, gap_net
from helpers.zoo import assert_never_the_head_or_a_patch_embedding


def not_constant(result: camkit.Explanation) -> bool:
    flat = result.maps.flatten(2)
    return bool((flat.amax(dim=2) > flat.amin(dim=2)).all())


def grid_cells(result: camkit.Explanation) -> int:
    return int(torch.tensor(result.raw[0].shape[2:]).prod())


# name -> (timm name, create options, input side, the layer users pick)
TIMM = {
    "resnet": ("resnet18", {}, 64, "layer4"),
    "convnext": ("convnext_atto", {}, 64, "stages"),
    "efficientnet": ("efficientnet_b0", {}, 64, "bn2"),
    "mobilenetv3": ("mobilenetv3_small_050", {}, 64, "blocks"),
    "regnet": ("regnetx_002", {}, 64, "s4"),  # its final_conv is an Identity: same map
    "vit": ("vit_tiny_patch16_224", {"img_size": 64}, 64, "blocks.11.norm1"),
    "deit": ("deit_tiny_distilled_patch16_224", {"img_size": 64}, 64, "blocks.11.norm1"),
    "swin": ("swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 2}, 64, "norm"),
    "mobilevit": ("mobilevit_xxs", {}, 64, "final_conv"),
    "hybrid": ("vit_small_r26_s32_224", {"img_size": 64}, 64, "blocks.11.norm1"),
    "coat": ("coat_lite_tiny", {"img_size": 64}, 64, "serial_blocks4.1.norm1"),
    "poolformer": ("poolformer_s12", {}, 64, "stages"),
}


@pytest.mark.parametrize("family", list(TIMM))
def test_timm_models_get_the_layer_users_pick_and_a_real_map(family) -> None:
    name, options, side, expected = TIMM[family]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=7, **options).eval()
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    assert_explained(model, x, expected)


def assert_explained(model: nn.Module, x: torch.Tensor, layer: str) -> None:
    """The automatic layer is `layer`, its grid is larger than 1 x 1, and the score's gradient
    reaches it: element-wise Grad-CAM (sum of ReLU(g * A), never cancelled by signs) is not
    constant. (Grad-CAM itself can be blank with random weights: a signed layer's weighted sum
    may be negative everywhere.)"""
    assert find_spatial_layer(model, x) == layer
    assert_never_the_head_or_a_patch_embedding(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", camkit.CamkitWarning)
        grad = camkit.GradCAM(model)(x)
    assert grad.layers == (layer,)
    assert grid_cells(grad) > 1
    assert not_constant(camkit.GradCAMElementWise(model)(x))


def hf(config: str, model: str, **options):
    torch.manual_seed(0)
    return getattr(transformers, model)(getattr(transformers, config)(num_labels=5, **options))


TOKENS = {
    "image_size": 64,
    "patch_size": 16,
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}
STAGES = {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}
HF = {
    "vit": (("ViTConfig", "ViTForImageClassification"), TOKENS, "vit.layers.3.layernorm_before"),
    "deit": (
        ("DeiTConfig", "DeiTForImageClassificationWithTeacher"),
        TOKENS,
        "deit.layers.3.layernorm_before",
    ),
    "beit": (("BeitConfig", "BeitForImageClassification"), TOKENS, "beit.layers.3"),
    "dinov2": (("Dinov2Config", "Dinov2ForImageClassification"), TOKENS, "dinov2.layernorm"),
    "convnext": (
        ("ConvNextConfig", "ConvNextForImageClassification"),
        STAGES,
        "convnext.encoder.stages.3",
    ),
    "resnet": (
        ("ResNetConfig", "ResNetForImageClassification"),
        {**STAGES, "embedding_size": 16},
        "resnet.encoder.stages.3",
    ),
    "swin": (
        ("SwinConfig", "SwinForImageClassification"),
        {
            "image_size": 64,
            "embed_dim": 16,
            "depths": [1, 1],
            "num_heads": [2, 2],
            "window_size": 4,
        },
        "swin.layernorm",
    ),
}


@pytest.mark.parametrize("family", list(HF))
def test_hugging_face_models_get_the_layer_users_pick_and_a_real_map(family) -> None:
    (config, model_class), options, expected = HF[family]
    model = hf(config, model_class, **options).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert_explained(model, x, expected)  # the logits come from the output's .logits
    # keyword input, as Hugging Face pipelines call the model
    keyword = camkit.GradCAMElementWise(model)({"pixel_values": x})
    torch.testing.assert_close(keyword.maps, camkit.GradCAMElementWise(model)(x).maps)


def test_a_sequential_that_ends_in_global_pooling_is_looked_into() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        ),
        nn.Flatten(),
        nn.Linear(16, 5),
    ).eval()
    x = torch.rand(2, 3, 32, 32)
    assert find_spatial_layer(model, x) == "0.3"
    assert camkit.GradCAM(model)(x).raw[0].shape[2:] == (28, 28)
    listed = {c.name: c for c in candidates(model, x)}
    assert listed["0.3"].shape == (1, 16, 28, 28)
    assert listed["0.3"].layout == "spatial"
    assert listed["0"].grid == (1, 1)
    assert "0.4" not in listed


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, num_classes=5
    ).eval()


@pytest.fixture(scope="module")
def detections(detector) -> tuple[torch.Tensor, camkit.Box]:
    x = torch.rand(2, 3, 160, 200, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        found = detector(x)
    boxes = torch.stack([d["boxes"][:1] for d in found])  # each image's top box
    labels = torch.stack([d["labels"][:1] for d in found])
    return x, camkit.Box(boxes, labels)


def test_faster_rcnn_box_with_the_backbones_last_stage(detector, detections) -> None:
    x, box = detections
    assert find_spatial_layer(detector, x) == "backbone.body.16"
    result = camkit.GradCAM(detector)(x, targets=box)
    assert result.layers == ("backbone.body.16",)
    assert not_constant(result)
    with torch.no_grad():
        top = torch.stack([d["scores"][0] for d in detector(x)])
    torch.testing.assert_close(result.scores[:, 0], top)  # the explained score is the box's


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in camkit.METHODS if m != "activation-sum"])
def test_every_method_on_a_detector_gives_a_map_or_says_why_not(method, detector, detections):
    x, box = detections
    # 960 channels: a few suffice; two samples and scales keep the slow ones short
    options = {
        "scorecam": {"channels": 4},
        "sscam": {"channels": 4, "samples": 2},
        "iscam": {"channels": 4, "samples": 2},
    }.get(method, {})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", camkit.CamkitWarning)  # random weights: may be blank
            result = camkit.METHODS[method](detector, **options)(x, targets=box)
    except ValueError as error:
        reasons = {
            "cam": "CAM explains class indices",
            "dff": "CAM explains class indices",
            "ablationcam": "skip connection",
            "finercam": "finercam explains classes",
            "sess": "sess explains classes",
            "shapleycam": "needs second derivatives",  # roi_align has none
            **dict.fromkeys(ATTENTION_METHODS, "explains transformers"),
        }
        assert method in reasons
        assert reasons[method] in str(error)
    else:
        assert result.maps.shape == (2, 1, 160, 200)
        assert torch.isfinite(result.maps).all()


def test_grad_cam_plus_plus_weights_are_never_negative_which_blanks_signed_layers(
    detector, detections
) -> None:
    """Why Grad-CAM++ can be all zero on Faster R-CNN: its channel weights are alpha * ReLU(g)
    >= 0, and MobileNetV3's last stage ends in Hardswish (signed, centred near 0 with random
    weights), so the weighted sum can be negative everywhere; the ReLU then leaves nothing.
    Grad-CAM's weights (mean gradients) take both signs."""
    x, box = detections
    seen = {}

    class Spy(camkit.GradCAMPlusPlus):
        def weigh(self, evidence):
            seen["activations"], seen["map"] = evidence.activations, super().weigh(evidence)
            return seen["map"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", camkit.CamkitWarning)
        Spy(detector)(x, targets=box)
    assert float((seen["activations"] < 0).float().mean()) > 0.3  # a signed layer
    blank = seen["map"].flatten(1).amax(dim=1) <= 0
    assert bool(blank.any())  # at least one image's weighted sum is <= 0 everywhere
    assert not_constant(camkit.GradCAM(detector)(x, targets=box))


@pytest.mark.slow
def test_deeplab_region_per_image_masks_with_every_kind_of_method() -> None:
    torch.manual_seed(0)
    model = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=4, aux_loss=False
    ).eval()
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(2, 96, 96, dtype=torch.bool)
    masks[0, 10:40, 10:40] = True
    masks[1, 50:90, 40:80] = True
    target = camkit.Region([1, 2], masks)
    assert find_spatial_layer(model, x) == "backbone.16"
    kinds = [
        ("gradcam", {}),
        ("scorecam", {"channels": 8}),
        ("ablationcam", {}),
        ("gradcam", {"smooth": camkit.Noise(3, 0.0)}),  # copies: rows 0, 1, 0, 1, 0, 1
    ]
    for method, options in kinds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", camkit.CamkitWarning)
            together = camkit.explain(model, x, method, targets=target, **options)
            alone = [
                camkit.explain(
                    model, x[i : i + 1], method, targets=Region([1, 2][i], masks[i]), **options
                )
                for i in range(2)
            ]
        for i in range(2):  # each image is explained for its own mask and class
            torch.testing.assert_close(together.maps[i], alone[i].maps[0], atol=1e-4, rtol=0)


class NiN(nn.Module):
    """The head of Network in Network and of the CAM paper: the last convolution gives one map per
    class, global average pooling turns each map into its class's score (optionally followed by a
    1 x 1 convolution, as in torchcam's tests)."""

    def __init__(self, after: str = "none") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.after = nn.Conv2d(5, 5, 1) if after == "conv" else nn.Identity()

    def forward(self, x):
        return self.after(self.pool(self.features(x))).flatten(1)


@pytest.mark.parametrize("after", ["none", "conv"])
def test_cam_on_network_in_network_heads_equals_grad_cam(after) -> None:
    model = NiN(after).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    cam = camkit.CAM(model)(x, targets=camkit.TopK(2))
    grad = camkit.GradCAM(model)(x, targets=camkit.TopK(2))
    torch.testing.assert_close(cam.maps, grad.maps, atol=1e-5, rtol=0)
    if after == "none":  # CAM is the class's own map
        features = model.features(x).detach()
        own = features.gather(1, cam.targets[:, :, None, None].expand(-1, -1, 16, 16))
        torch.testing.assert_close(cam.raw[0], own.clamp_min(0))
    head = camkit.CAM(model, head=model.after)(x) if after == "conv" else None
    if head is not None:
        torch.testing.assert_close(head.maps, camkit.CAM(model)(x).maps)


class ImageAndMask(nn.Module):
    """Two inputs: an image and a per-pixel weight; the weight scales the features."""

    def __init__(self) -> None:
        super().__init__()
        self.net = gap_net()

    def forward(self, image, weight=None):
        weight = torch.ones_like(image[:, :1]) if weight is None else weight
        return self.net(image * weight)


def test_several_inputs_as_a_tuple_or_keywords() -> None:
    model = ImageAndMask().eval()
    image = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(4))
    weight = torch.rand(2, 1, 12, 10, generator=torch.Generator().manual_seed(5))
    plain = camkit.GradCAM(model.net, layer="3")(image * weight)
    for method in ("gradcam", "scorecam", "ablationcam"):
        as_tuple = camkit.explain(model, (image, weight), method, layer="net.3")
        as_dict = camkit.explain(model, {"image": image, "weight": weight}, method, layer="net.3")
        torch.testing.assert_close(as_dict.maps, as_tuple.maps)
        assert as_tuple.maps.shape == (2, 1, 12, 10)
    torch.testing.assert_close(
        camkit.GradCAM(model, layer="net.3")((image, weight)).maps, plain.maps
    )
    smooth = camkit.GradCAM(model, layer="net.3", smooth=camkit.Noise(2, 0.05, seed=0))
    assert smooth((image, weight)).maps.shape == (2, 1, 12, 10)
    automatic = camkit.GradCAM(model)((image, weight))
    assert automatic.layers == ("net.3",)
    small = torch.rand(2, 1, 6, 5)  # maps follow the named input
    named = camkit.GradCAM(model, layer="net.3", spatial_input="weight")(
        {"image": image, "weight": nn.functional.interpolate(small, size=(12, 10))}
    )
    assert named.maps.shape == (2, 1, 12, 10)
    with pytest.raises(ValueError, match="spatial_input='nope' is not one of the tensor inputs"):
        camkit.GradCAM(model, spatial_input="nope")({"image": image})
    with pytest.raises(ValueError, match="every input needs the same batch size"):
        camkit.GradCAM(model, spatial_input=1)((image, weight[:1]))


NEW_IN_0_3 = [
    "gradcam-counterfactual",
    "shapleycam",
    "finercam",
    "refinecam",
    "sess",
    "sscam",
    "iscam",
    "kpcacam",
    "segeigencam",
    "fem",
    "dff",
    "guided-backprop",
    "guided-gradcam",
    "fullgrad",
    "randomcam",
    "sobel",
]


@pytest.fixture(scope="module")
def token_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=7, img_size=32)
    convnext = timm.create_model("convnext_atto", pretrained=False, num_classes=7)
    return {"vit": vit.eval(), "convnext": convnext.eval()}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vit", "convnext"])
@pytest.mark.parametrize("method", NEW_IN_0_3)
def test_the_new_methods_on_a_vit_and_a_convnext_give_maps_or_say_why(
    method, family, token_models
) -> None:
    """A timm ViT (token layers, GELU) and ConvNeXt (channels-last norms, GELU): each method
    gives a map for two targets per image, or refuses with its reason."""
    model = token_models[family]
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    options = {
        "sscam": {"samples": 2, "channels": 4},
        "iscam": {"samples": 2, "channels": 4},
        "sess": {"num_scales": 2},
    }.get(method, {})
    refusals = {
        "guided-backprop": "defined for ReLU networks",  # GELU
        "guided-gradcam": "defined for ReLU networks",
        "dff": "followed by global average pooling",  # a norm between layer and head
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", camkit.CamkitWarning)  # random weights: may be blank
            result = camkit.explain(model, x, method, targets=camkit.TopK(2), **options)
    except ValueError as error:
        assert method in refusals, error
        assert refusals[method] in str(error)
    else:
        assert method not in refusals or (family == "convnext" and method == "dff")
        assert result.maps.shape == (2, 2, 32, 32)
        assert torch.isfinite(result.maps).all()
