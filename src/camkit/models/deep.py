"""The deeper bundled model: two convolution stages and an MLP after the explained layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import override

from camkit.data.shapes import CLASSES
from camkit.models._weights import load_shipped
from camkit.models.shapes import _block

WEIGHTS_FILE = "deep_shapes_net.pt"
# The last convolution of `features`, at 1/4 of the input's resolution; its batch norm and ReLU,
# two more stages and the MLP come after. Its output is signed and the gradient reaching it is
# not zeroed where it is negative, so LayerCAM's ReLU(g) * A and element-wise Grad-CAM's
# ReLU(g * A) differ: at the output of a ReLU (A >= 0) or just before one (g = 0 where A < 0)
# they are equal by construction.
EXPLAINED_LAYER = "features.6.0"


class DeepShapesNet(nn.Module):
    """Convolutional features (``features``, at 1/4 resolution; explained at its last
    convolution, `EXPLAINED_LAYER`), two more stages that pool to 1/16, global average pooling
    and a two-layer MLP. Between the explained layer and the score the network is non-linear in
    space and in channels, so the methods that coincide on `ShapesNet` (CAM, Grad-CAM,
    HiResCAM, XGrad-CAM; LayerCAM and element-wise Grad-CAM) give different maps here, and CAM
    does not apply at all. About 0.24 M parameters.

    Examples:
        >>> import torch
        >>> DeepShapesNet()(torch.rand(2, 3, 96, 96)).shape
        torch.Size([2, 6])
    """

    classes: tuple[str, ...] = CLASSES
    mean: Tensor
    std: Tensor

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
        )
        self.stages = nn.Sequential(
            nn.MaxPool2d(2), _block(4 * w, 6 * w), nn.MaxPool2d(2), _block(6 * w, 8 * w)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Linear(8 * w, 4 * w), nn.ReLU(inplace=True), nn.Linear(4 * w, len(CLASSES))
        )
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    @override
    def forward(self, x: Tensor) -> Tensor:
        features = self.features((x - self.mean) / self.std)
        logits: Tensor = self.head(self.pool(self.stages(features)).flatten(1))
        return logits


def load_deep_model(pretrained: bool = True) -> DeepShapesNet:
    """The deeper classifier in eval mode, with its shipped weights (no download); trained on
    `camkit.data.HardShapes` by ``scripts/train_deep.py``. Explain it at
    ``layer=EXPLAINED_LAYER`` (``"features.6.0"``).

    Examples:
        >>> from camkit.data import HardShapes
        >>> model = load_deep_model()
        >>> data = HardShapes(16, seed=6000).stack()
        >>> bool((model(data["image"]).argmax(1) == data["label"]).float().mean() > 0.7)
        True
    """
    return load_shipped(DeepShapesNet(), WEIGHTS_FILE) if pretrained else DeepShapesNet().eval()
