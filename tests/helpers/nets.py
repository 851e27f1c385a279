"""Small random-weight networks the tests build (no downloads)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


def gap_net(in_channels: int = 3, classes: int = 5, dims: int = 2, seed: int = 0) -> nn.Module:
    """conv-ReLU-conv-ReLU, global average pooling, one linear layer: the CAM architecture.

    Children: "0" first conv, "2" second conv (the last spatial layer is "3", its ReLU).
    """
    torch.manual_seed(seed)
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dims]
    return nn.Sequential(
        conv(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        conv(8, 16, 3, padding=1),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    ).eval()


# (constructor, automatic layer, an earlier layer): five families with random weights.
ARCHITECTURES = {
    "resnet18": (torchvision.models.resnet18, "layer4", "layer3"),
    # VGG: every convolution is followed by ReLU(inplace=True); "features.18" is such a conv.
    "vgg11": (torchvision.models.vgg11, "features", "features.18"),
    "densenet121": (torchvision.models.densenet121, "features", "features.denseblock3"),
    "mobilenet_v3_small": (torchvision.models.mobilenet_v3_small, "features", "features.8"),
    "efficientnet_b0": (torchvision.models.efficientnet_b0, "features", "features.5"),
}


def _attention_methods() -> frozenset[str]:
    from camkit.methods import METHODS

    return frozenset(name for name, cls in METHODS.items() if cls.layer_means == "blocks")


# The methods drawn from a transformer's attention: they explain a ViT, not a CNN (what each
# method says of its `layer`, the source of truth).
ATTENTION_METHODS = _attention_methods()


def tiny_vit(seed: int = 0) -> nn.Module:
    """The bundled ViT's architecture, two blocks, random weights, in eval mode."""
    from camkit.models import ShapesViT

    torch.manual_seed(seed)
    model = ShapesViT(depth=2)
    nn.init.normal_(model.head.weight, std=0.5)
    return model.eval()


def net_for(method: str) -> nn.Module:
    """A small random network the method explains: `tiny_vit` for the attention methods,
    `gap_net` for the rest."""
    return tiny_vit() if method in ATTENTION_METHODS else gap_net()
