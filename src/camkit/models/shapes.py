"""The bundled model: a small Network-in-Network-style classifier of `camkit.data` shapes."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import override

from camkit.data.shapes import CLASSES
from camkit.models._weights import load_shipped

WEIGHTS_FILE = "shapes_net.pt"


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class ShapesNet(nn.Module):
    """Convolutional features, global average pooling, one linear layer (so CAM applies).

    Takes RGB images in [0, 1] of any size (normalisation is part of the model); the feature map
    (``features``) has 1/8 of the input's resolution. About 0.29 M parameters.

    Examples:
        >>> import torch
        >>> ShapesNet()(torch.rand(2, 3, 96, 96)).shape
        torch.Size([2, 6])
    """

    classes: tuple[str, ...] = CLASSES

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w),
            nn.MaxPool2d(2),
            _block(w, 2 * w),
            _block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            _block(2 * w, 4 * w),
            _block(4 * w, 4 * w),
            nn.MaxPool2d(2),
            _block(4 * w, 8 * w),
            _block(8 * w, 8 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8 * w, len(CLASSES))
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    mean: Tensor
    std: Tensor

    @override
    def forward(self, x: Tensor) -> Tensor:
        features = self.features((x - self.mean) / self.std)
        logits: Tensor = self.classifier(self.pool(features).flatten(1))
        return logits


def load_shapes_model(pretrained: bool = True) -> ShapesNet:
    """The bundled shapes classifier in eval mode, with its shipped weights (no download).

    ``pretrained=False`` gives the same network with random weights, a control for sanity checks.

    Examples:
        >>> model = load_shapes_model()
        >>> model.classes[:3], model.training
        (('disc', 'square', 'triangle'), False)
    """
    return load_shipped(ShapesNet(), WEIGHTS_FILE) if pretrained else ShapesNet().eval()
