"""3-D volumes (B, C, D, H, W) and 1-D signals (B, C, L) work with every method.

Run: python examples/volumes_and_signals.py
"""

import torch
from torch import nn

import camkit


def classifier(dims: int) -> nn.Module:
    conv = {1: nn.Conv1d, 3: nn.Conv3d}[dims]
    pool = {1: nn.AdaptiveAvgPool1d, 3: nn.AdaptiveAvgPool3d}[dims]
    torch.manual_seed(0)
    return nn.Sequential(
        conv(1, 8, 3, padding=1),
        nn.ReLU(),
        conv(8, 16, 3, padding=1),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).eval()


volume = torch.rand(2, 1, 16, 32, 32)  # e.g. a CT crop: depth, height, width
signal = torch.rand(3, 1, 500)  # e.g. an ECG lead
for name, model, x in (("volume", classifier(3), volume), ("signal", classifier(1), signal)):
    for method in ("cam", "gradcam", "scorecam"):
        result = camkit.explain(model, x, method)
        print(
            f"{name} {method:8s} maps {tuple(result.maps.shape)}"
        )  # trilinear / linear upsampling
