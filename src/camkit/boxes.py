"""Boxes (x0, y0, x1, y1): their overlap, written once for the metrics and the detection regions."""

from __future__ import annotations

import torch
from torch import Tensor


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of boxes (..., 4), broadcast over the leading dimensions:
    paired boxes (B, 4) and (B, 4) give (B,); every pair, ``box_iou(a[:, None], b[None])``,
    gives (K, N). Empty unions give 0.

    Examples:
        >>> box_iou(torch.tensor([[0, 0, 2, 2]]), torch.tensor([[1, 0, 3, 2]]))  # 2 / (4 + 4 - 2)
        tensor([0.3333])
    """
    a, b = a.float(), b.float().to(a.device)
    low = torch.maximum(a[..., :2], b[..., :2])
    high = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (high - low).clamp_min(0).prod(dim=-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp_min(0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp_min(0).prod(dim=-1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), 0.0)
