"""Step 4 of the pipeline, shared by every method: ReLU, upsample, normalise, fuse."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from camkit.errors import CamkitWarning

Fuse = Literal["mean", "max", "product"]
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def rectify(weighted: Tensor, layer: str) -> Tensor:
    """ReLU of a method's weighted sum, with non-finite values replaced by 0 (and a warning).

    Examples:
        >>> import torch
        >>> rectify(torch.tensor([[[-1.0, 2.0]]]), "layer").tolist()
        [[[0.0, 2.0]]]
    """
    finite = torch.isfinite(weighted)
    if not bool(finite.all()):
        warnings.warn(
            f"non-finite values in the map of layer {layer!r} (overflow in half precision?) were "
            "set to 0; try float32 inputs",
            CamkitWarning,
            stacklevel=5,
        )
        weighted = torch.where(finite, weighted, 0.0)
    return weighted.clamp_min(0.0)


def upsample(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Resize (B, K, *spatial) maps to `size` with (bi/tri)linear interpolation.

    Examples:
        >>> import torch
        >>> upsample(torch.ones(1, 2, 3, 3), (8, 6)).shape
        torch.Size([1, 2, 8, 6])
    """
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode=_MODES[len(size)], align_corners=False)


def normalise(maps: Tensor) -> Tensor:
    """Scale each (B, K) map to [0, 1] (min-max); a constant map becomes 0, or 1 where positive.

    Examples:
        >>> import torch
        >>> normalise(torch.tensor([[[1.0, 3.0, 2.0]], [[0.0, 0.0, 0.0]]])).tolist()
        [[[0.0, 1.0, 0.5]], [[0.0, 0.0, 0.0]]]
    """
    flat = maps.flatten(2)
    low = flat.amin(dim=2).reshape(*maps.shape[:2], *([1] * (maps.dim() - 2)))
    high = flat.amax(dim=2).reshape(low.shape)
    span = high - low
    constant = span <= 0
    scaled = (maps - low) / torch.where(constant, 1.0, span)
    return torch.where(constant, (high > 0).to(maps.dtype), scaled)


def warn_constant(maps: Tensor, method: str) -> None:
    """Warn when some maps carry no spatial information (all-zero gradient, 1x1 layer, ...)."""
    flat = maps.flatten(2)
    constant = flat.amax(dim=2) <= flat.amin(dim=2)
    if bool(constant.any()):
        warnings.warn(
            f"{int(constant.sum())} of {constant.numel()} {method} maps are constant (all-zero "
            "gradient or evidence, or a layer too coarse for the input): they are returned as 0 "
            "(1 where the constant is positive) instead of NaN",
            CamkitWarning,
            stacklevel=4,
        )


def fuse(maps: Sequence[Tensor], how: Fuse = "mean") -> Tensor:
    """Combine normalised per-layer maps of one shape into one normalised map.

    Examples:
        >>> import torch
        >>> fuse([torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[1.0, 1.0]]])], "max").tolist()
        [[[1.0, 1.0]]]
    """
    if len(maps) == 1:
        return maps[0]
    stacked = torch.stack(tuple(maps))
    if how == "mean":
        combined = stacked.mean(dim=0)
    elif how == "max":
        combined = stacked.amax(dim=0)
    elif how == "product":
        combined = stacked.prod(dim=0)
    else:
        raise ValueError(f"fuse must be 'mean', 'max' or 'product', got {how!r}")
    return normalise(combined)
