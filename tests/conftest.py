"""Shared fixtures: small random-weight networks (no downloads), built once per session."""

from __future__ import annotations

import pytest
import torch
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


@pytest.fixture
def tiny() -> nn.Module:
    return gap_net()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 12, 10, generator=torch.Generator().manual_seed(1))
