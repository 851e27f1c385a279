"""Models from the libraries people train with, built small from configs with random weights
(nothing is downloaded), each with the input it takes, what to explain on it, and the layer
camkit must choose by itself.

`CONFIGS` maps an id ("smp-unet", "yolov8-detect", ...) to a `Config`; `build(config)` makes the
model in eval mode (seeded) and the input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

Build = Callable[[], nn.Module]


@dataclasses.dataclass(frozen=True)
class Config:
    """One model configuration.

    Attributes:
        library: where it comes from.
        build: makes the model (random weights).
        shape: the input's shape (B, C, *spatial).
        target: "class" (the predicted class), "region" (a class inside a box mask on the
            output's grid) or "detection" (the top detection, camkit's default for detectors).
        layer: the automatic layer camkit must choose (a list for fused scales).
        sure: whether camkit's rule for it is sure (no warning).
        slow: built or run slowly on 2 CPUs (marked slow).
    """

    library: str
    build: Build
    shape: tuple[int, ...]
    target: str
    layer: str | tuple[str, ...]
    sure: bool = True
    slow: bool = False


def _smp(arch: str, encoder: str = "resnet18", **options: object) -> Build:
    def build() -> nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=3, **options)

    return build


def _yolo(yaml: str) -> Build:
    def build() -> nn.Module:
        from ultralytics import YOLO

        return YOLO(yaml)  # the wrapper itself: camkit explains its .model

    return build


def _monai(name: str, **options: object) -> Build:
    def build() -> nn.Module:
        import monai.networks.nets as nets

        return getattr(nets, name)(**options)

    return build


def _timm(name: str, **options: object) -> Build:
    def build() -> nn.Module:
        import timm

        model = timm.create_model(name, pretrained=False, num_classes=5, **options)
        head = getattr(getattr(model, "head", None), "fc", None)
        if isinstance(head, nn.Linear) and not bool(head.weight.any()):
            nn.init.normal_(head.weight, std=0.02)  # Hiera's head starts at zero
        return model

    return build


def _hf(config: str, model: str, **options: object) -> Build:
    def build() -> nn.Module:
        import transformers

        return getattr(transformers, model)(getattr(transformers, config)(**options))

    return build


def _torchvision(name: str, **options: object) -> Build:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, **options)

    return build


SMALL_VIT = {
    "image_size": 64,
    "patch_size": 16,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_labels": 5,
}
RESNET_BACKBONE = {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "embedding_size": 16}


def _detr() -> nn.Module:
    import transformers

    backbone = transformers.ResNetConfig(**RESNET_BACKBONE, out_features=["stage4"])
    config = transformers.DetrConfig(
        use_timm_backbone=False,
        backbone_config=backbone,
        use_pretrained_backbone=False,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=16,
        num_labels=4,
    )
    return transformers.DetrForObjectDetection(config)


def _rt_detr() -> nn.Module:
    import transformers

    backbone = transformers.RTDetrResNetConfig(
        **RESNET_BACKBONE, out_features=["stage2", "stage3", "stage4"]
    )
    config = transformers.RTDetrConfig(
        backbone_config=backbone,
        encoder_hidden_dim=32,
        d_model=32,
        decoder_layers=1,
        num_queries=16,
        num_labels=4,
        encoder_in_channels=[32, 64, 128],
        decoder_in_channels=[32, 32, 32],
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
    )
    return transformers.RTDetrForObjectDetection(config)


def _upernet() -> nn.Module:
    import transformers

    backbone = transformers.ConvNextConfig(
        hidden_sizes=[16, 32, 64, 128],
        depths=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = transformers.UperNetConfig(
        backbone_config=backbone,
        hidden_size=32,
        auxiliary_in_channels=64,
        num_labels=3,
        use_auxiliary_head=False,
    )
    return transformers.UperNetForSemanticSegmentation(config)


IMAGE = (2, 3, 64, 64)
VOLUME = (1, 1, 32, 32, 32)

CONFIGS: dict[str, Config] = {
    # ultralytics YOLO from its yaml: detect, segment, pose heads read P3-P5 (fused); classify
    "yolov8-detect": Config(
        "ultralytics",
        _yolo("yolov8n.yaml"),
        IMAGE,
        "detection",
        ("model.15", "model.18", "model.21"),
    ),
    "yolov8-segment": Config(
        "ultralytics",
        _yolo("yolov8n-seg.yaml"),
        IMAGE,
        "detection",
        ("model.15", "model.18", "model.21"),
    ),
    "yolov8-pose": Config(
        "ultralytics",
        _yolo("yolov8n-pose.yaml"),
        IMAGE,
        "detection",
        ("model.15", "model.18", "model.21"),
    ),
    "yolov8-classify": Config(
        "ultralytics", _yolo("yolov8n-cls.yaml"), IMAGE, "class", "model.9.conv"
    ),
    "yolo11-detect": Config(
        "ultralytics",
        _yolo("yolo11n.yaml"),
        IMAGE,
        "detection",
        ("model.16", "model.19", "model.22"),
    ),
    "yolo11-segment": Config(
        "ultralytics",
        _yolo("yolo11n-seg.yaml"),
        IMAGE,
        "detection",
        ("model.16", "model.19", "model.22"),
    ),
    "yolo11-classify": Config(
        "ultralytics", _yolo("yolo11n-cls.yaml"), IMAGE, "class", "model.10.conv"
    ),
    "yolo26-detect": Config(
        "ultralytics",
        _yolo("yolo26n.yaml"),
        IMAGE,
        "detection",
        ("model.16", "model.19", "model.22"),
    ),
    # segmentation-models-pytorch: the encoder's deepest stage
    "smp-unet": Config("smp", _smp("Unet"), IMAGE, "region", "encoder.layer4"),
    "smp-unet-timm": Config(
        "smp", _smp("Unet", "tu-resnet18"), IMAGE, "region", "encoder.model.layer4"
    ),
    "smp-unet-efficientnet": Config(
        "smp", _smp("Unet", "efficientnet-b0"), IMAGE, "region", "encoder._blocks.15"
    ),
    "smp-unetplusplus": Config("smp", _smp("UnetPlusPlus"), IMAGE, "region", "encoder.layer4"),
    "smp-fpn": Config("smp", _smp("FPN"), IMAGE, "region", "encoder.layer4"),
    "smp-deeplabv3": Config("smp", _smp("DeepLabV3"), IMAGE, "region", "encoder.layer4"),
    "smp-deeplabv3plus": Config("smp", _smp("DeepLabV3Plus"), IMAGE, "region", "encoder.layer4"),
    "smp-linknet": Config("smp", _smp("Linknet"), IMAGE, "region", "encoder.layer4"),
    "smp-manet": Config("smp", _smp("MAnet"), IMAGE, "region", "encoder.layer4"),
    "smp-pspnet": Config("smp", _smp("PSPNet"), IMAGE, "region", "encoder.layer2"),
    "smp-upernet": Config("smp", _smp("UPerNet"), IMAGE, "region", "encoder.layer4"),
    "smp-segformer": Config("smp", _smp("Segformer", "mit_b0"), IMAGE, "region", "encoder.norm4"),
    # MONAI: 2-D and 3-D segmenters (the bottleneck), 3-D classifiers
    "monai-unet-2d": Config(
        "monai",
        _monai(
            "UNet",
            spatial_dims=2,
            in_channels=1,
            out_channels=3,
            channels=(8, 16, 32, 64),
            strides=(2, 2, 2),
        ),
        (2, 1, 64, 64),
        "region",
        "model.1.submodule.1.submodule.1",
    ),
    "monai-unet-3d": Config(
        "monai",
        _monai(
            "UNet",
            spatial_dims=3,
            in_channels=1,
            out_channels=3,
            channels=(8, 16, 32),
            strides=(2, 2),
        ),
        VOLUME,
        "region",
        "model.1.submodule.1",
    ),
    "monai-basicunet": Config(
        "monai",
        _monai(
            "BasicUNet", spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4)
        ),
        (2, 1, 64, 64),
        "region",
        "down_4",
    ),
    "monai-swinunetr": Config(
        "monai",
        _monai(
            "SwinUNETR",
            in_channels=1,
            out_channels=3,
            feature_size=12,
            spatial_dims=3,
            depths=(1, 1, 1, 1),
            num_heads=(1, 1, 1, 1),
        ),
        (1, 1, 64, 64, 64),
        "region",
        "swinViT.layers4.0",
        slow=True,
    ),
    "monai-vit-3d": Config(
        "monai",
        _monai(
            "ViT",
            in_channels=1,
            img_size=(32, 32, 32),
            patch_size=(8, 8, 8),
            hidden_size=48,
            mlp_dim=96,
            num_layers=2,
            num_heads=4,
            classification=True,
            num_classes=3,
        ),
        VOLUME,
        "class",
        "blocks.1.norm1",
    ),
    "monai-densenet-3d": Config(
        "monai",
        _monai(
            "DenseNet",
            spatial_dims=3,
            in_channels=1,
            out_channels=3,
            init_features=8,
            growth_rate=8,
            block_config=(2, 2, 2, 2),
        ),
        (1, 1, 64, 64, 64),
        "class",
        "class_layers.relu",
    ),
    "monai-resnet-3d": Config(
        "monai",
        _monai("resnet10", spatial_dims=3, n_input_channels=1, num_classes=3),
        VOLUME,
        "class",
        "layer4",
    ),
    # Hugging Face
    "hf-segformer": Config(
        "transformers",
        _hf(
            "SegformerConfig",
            "SegformerForSemanticSegmentation",
            num_labels=3,
            hidden_sizes=[8, 16, 32, 64],
            depths=[1, 1, 1, 1],
            decoder_hidden_size=32,
            num_attention_heads=[1, 1, 2, 2],
        ),
        IMAGE,
        "region",
        "segformer.stages.3",
    ),
    "hf-upernet": Config(
        "transformers", _upernet, IMAGE, "region", "backbone.hidden_states_norms.stage4"
    ),
    "hf-detr": Config(
        "transformers", _detr, IMAGE, "detection", "model.backbone.model.encoder.stages.3"
    ),
    "hf-rt-detr": Config(
        "transformers", _rt_detr, IMAGE, "detection", "model.backbone.model.encoder.stages.3"
    ),
    "hf-dinov2-registers": Config(
        "transformers",
        _hf(
            "Dinov2WithRegistersConfig",
            "Dinov2WithRegistersForImageClassification",
            **{**SMALL_VIT, "patch_size": 8, "num_register_tokens": 4},
        ),
        IMAGE,
        "class",
        "dinov2_with_registers.layernorm",
    ),
    "hf-swinv2": Config(
        "transformers",
        _hf(
            "Swinv2Config",
            "Swinv2ForImageClassification",
            image_size=64,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 2],
            window_size=4,
            num_labels=5,
        ),
        IMAGE,
        "class",
        "swinv2.layernorm",
    ),
    "hf-mobilevit": Config(
        "transformers",
        _hf("MobileViTConfig", "MobileViTForImageClassification", image_size=64, num_labels=5),
        IMAGE,
        "class",
        "mobilevit.conv_1x1_exp",
    ),
    # timm
    "timm-vit-registers-gap": Config(
        "timm",
        _timm("vit_base_patch16_reg4_gap_256", img_size=64, depth=2, embed_dim=64, num_heads=2),
        IMAGE,
        "class",
        "blocks",
    ),
    "timm-hiera": Config("timm", _timm("hiera_tiny_224", img_size=64), IMAGE, "class", "blocks.11"),
    "timm-pvt-v2": Config("timm", _timm("pvt_v2_b0"), IMAGE, "class", "stages"),
    "timm-levit": Config("timm", _timm("levit_128s"), (1, 3, 224, 224), "class", "stages"),
    "timm-convnextv2": Config("timm", _timm("convnextv2_atto"), IMAGE, "class", "stages"),
    # torchvision: video keeps its time axis, detectors and segmenters their backbone
    "tv-r3d-18": Config(
        "torchvision", _torchvision("r3d_18", num_classes=5), (1, 3, 8, 64, 64), "class", "layer3"
    ),
    "tv-mvit-v2": Config(
        "torchvision",
        _torchvision("mvit_v2_s", num_classes=5),
        (1, 3, 16, 224, 224),
        "class",
        "blocks.15.norm1",
        slow=True,
    ),
    "tv-deeplabv3": Config(
        "torchvision",
        _torchvision(
            "deeplabv3_mobilenet_v3_large", num_classes=4, weights_backbone=None, aux_loss=False
        ),
        IMAGE,
        "region",
        "backbone.16",
    ),
    "tv-fcn": Config(
        "torchvision",
        _torchvision("fcn_resnet50", num_classes=4, weights_backbone=None, aux_loss=False),
        IMAGE,
        "region",
        "backbone.layer4",
        slow=True,
    ),
    "tv-retinanet": Config(
        "torchvision",
        _torchvision(
            "retinanet_resnet50_fpn", num_classes=3, weights_backbone=None, score_thresh=0.0
        ),
        IMAGE,
        "detection",
        "backbone.body.layer4",
        slow=True,
    ),
    "tv-fasterrcnn": Config(
        "torchvision",
        _torchvision(
            "fasterrcnn_mobilenet_v3_large_320_fpn",
            num_classes=3,
            weights_backbone=None,
            box_score_thresh=0.0,
        ),
        IMAGE,
        "detection",
        "backbone.body.16",
    ),
}


def build(config: Config) -> tuple[nn.Module, torch.Tensor]:
    """The configuration's model (eval mode, seeded random weights) and a seeded input."""
    torch.manual_seed(0)
    model = config.build().eval()
    x = torch.rand(*config.shape, generator=torch.Generator().manual_seed(1))
    return model, x


def region_target(model: nn.Module, x: torch.Tensor, output: object = None) -> object:
    """Class 1 inside a centred box, on the grid of the model's dense output."""
    import camkit
    from camkit.targets import select_output

    with torch.no_grad():
        logits = select_output(model(x), output)
    grid = logits.shape[2:]
    mask = torch.zeros(grid, dtype=torch.bool)
    mask[tuple(slice(g // 4, max(g // 4 + 1, 3 * g // 4)) for g in grid)] = True
    return camkit.Region(1, mask)


def assert_never_the_head_or_a_patch_embedding(model: nn.Module, x: object) -> None:
    """The automatic layers are outside the module that made the output (for a detection head:
    none of its box regression, class or DFL layers), and none is a patch embedding that token
    layers follow."""
    from camkit.layers import choose_layer, unwrap
    from camkit.survey import survey

    model = unwrap(model)
    seen = survey(model, x)
    found = [c.name for c in seen.found]
    for layer in choose_layer(model, x).names:
        if seen.head is not None:
            assert layer != seen.head, f"{layer} made the output"
            assert not layer.startswith(seen.head + "."), f"{layer} is inside the head"
        assert not {"dfl", "cv2", "cv3"} & set(layer.split(".")), f"{layer}: a YOLO head layer"
        later = {c.name for c in seen.found[found.index(layer) + 1 :]}
        tokens_follow = any(c.layout == "tokens" for c in seen.found if c.name in later)
        embedding = "embed" in layer.rsplit(".", 1)[-1]
        assert not (embedding and tokens_follow), f"{layer}: a patch embedding blocks follow"
