"""`python -m camkit`: explain a small random-weight network, to check an installation."""

from __future__ import annotations

import torch
from torch import nn

import camkit


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()
    x = torch.rand(4, 3, 64, 48)
    for name in camkit.METHODS:
        result = camkit.explain(model, x, name, targets=camkit.TopK(2))
        print(f"{name:10s} {result!r}  map mean {float(result.maps.mean()):.3f}")


if __name__ == "__main__":
    main()
