"""Superpixels for IROF: SLIC (Achanta et al., 2012) batched on the inputs' device.

Each input's pixels are clustered by k-means on their values and their position, the position
weighed by `compactness` over the grid step; each pixel looks only at the centres of its own
and the eight neighbouring grid cells, as in SLIC. Unlike scikit-image's `slic`, the values are
the model's inputs as they are (no Lab conversion) and segments are not forced connected.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def superpixels(
    x: Tensor, segments: int = 100, *, compactness: float = 0.1, iterations: int = 10
) -> Tensor:
    """(B, H, W) segment labels 0..k-1 (k <= `segments`, consecutive) of (B, C, H, W) inputs.

    Examples:
        >>> import torch
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> x[..., 4:] = 1.0  # two flat halves
        >>> labels = superpixels(x, segments=4)
        >>> bool((labels[0, :, :4, None] != labels[0, :, None, 4:]).all())  # never across
        True
    """
    if x.dim() != 4:
        raise ValueError(f"superpixels need (B, C, H, W) images, not shape {tuple(x.shape)}")
    if segments < 1 or iterations < 1:
        raise ValueError(f"segments {segments} and iterations {iterations}: give at least 1")
    batch, _, height, width = x.shape
    step = max(1.0, math.sqrt(height * width / segments))
    rows = torch.arange(height, device=x.device, dtype=torch.float32)
    columns = torch.arange(width, device=x.device, dtype=torch.float32)
    grid_y = torch.arange(step / 2, height, step, device=x.device)
    grid_x = torch.arange(step / 2, width, step, device=x.device)
    centres_y, centres_x = torch.meshgrid(grid_y, grid_x, indexing="ij")
    places = torch.stack([centres_y.flatten(), centres_x.flatten()], dim=1)  # (K, 2)
    where = torch.stack(torch.meshgrid(rows, columns, indexing="ij"), dim=-1).view(-1, 2)
    values = x.flatten(2).transpose(1, 2).float()  # (B, P, C)
    # features: values, and position scaled so that a grid step weighs `compactness`
    scale = compactness / step
    pixels = torch.cat([values, (scale * where).expand(batch, -1, -1)], dim=2)
    # start: the grid cells (each pixel with its nearest grid centre), their mean features
    labels = (where[:, None] - places[None]).square().sum(dim=2).argmin(dim=1).expand(batch, -1)
    centres = _means(pixels, labels, len(places))
    # each pixel may join only centres within two grid steps (its cell and the eight around)
    near = (where[:, None] - places[None]).abs().amax(dim=2) <= 2 * step  # (P, K)
    for _ in range(iterations):
        distance = torch.cdist(pixels, centres).masked_fill(~near, torch.inf)
        labels = distance.argmin(dim=2)
        centres = torch.where(
            _counts(labels, len(places))[..., None] > 0,
            _means(pixels, labels, len(places)),
            centres,
        )
    return _consecutive(labels).view(batch, height, width)


def _counts(labels: Tensor, k: int) -> Tensor:
    return torch.zeros(len(labels), k, device=labels.device).scatter_add_(
        1, labels, torch.ones_like(labels, dtype=torch.float32)
    )


def _means(pixels: Tensor, labels: Tensor, k: int) -> Tensor:
    """(B, K, D) the mean feature of each cluster (0 where empty)."""
    sums = torch.zeros(len(pixels), k, pixels.shape[2], device=pixels.device)
    sums.scatter_add_(1, labels[..., None].expand(-1, -1, pixels.shape[2]), pixels)
    return sums / _counts(labels, k).clamp_min(1)[..., None]


def _consecutive(labels: Tensor) -> Tensor:
    """Labels renumbered 0..k-1 in each row, in order of first use."""
    present = torch.zeros(
        len(labels), int(labels.max()) + 1, dtype=torch.long, device=labels.device
    )
    present.scatter_(1, labels, 1)
    number = present.cumsum(dim=1) - 1
    return number.gather(1, labels)
