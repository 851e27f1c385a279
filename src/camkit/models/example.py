"""The tiny network of the documentation's examples: one definition instead of a copy each."""

from __future__ import annotations

import torch
from torch import nn


def example_net(classes: int = 5, seed: int = 1) -> nn.Module:
    """conv(3 -> 8, 3x3) - ReLU - global average pooling - linear(8 -> `classes`), in eval mode,
    with weights drawn from `seed` (the caller's random stream is left as it was).

    Layers: ``"0"`` the convolution, ``"1"`` its ReLU (the layer camkit finds), ``"4"`` the
    linear head. It is the CAM architecture, so every method applies.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.GradCAM(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, classes),
        )
    return net.eval()
