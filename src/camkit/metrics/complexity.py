"""How concise is a map? Sparseness, complexity and effective complexity, as Quantus defines them.

- Sparseness (Chalasani et al., 2020): the Gini index of the map's absolute values, 0 for a
  map spread evenly over every pixel, towards 1 for one concentrated on a single pixel.
- Complexity (Bhatt et al., 2020): the entropy (natural logarithm) of the map's absolute values
  as a distribution over pixels, ``-sum_i p_i log p_i`` with ``p = |a| / sum |a|``: log(pixels)
  for an even map, 0 for one pixel.
- Effective complexity (Nguyen & Martinez, 2020): the pixels whose absolute value, over the
  map's largest, is above `eps`.

A map camkit makes is non-negative and min-max normalised, a constant map becoming all zeros:
an all-zero map counts as the even map it stands for (sparseness 0, complexity log(pixels)),
and as no pixel for effective complexity. Batched on the maps' device; each returns (B,).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from camkit.metrics._common import Maps, as_maps


def _flat(maps: Maps) -> Tensor:
    return as_maps(maps).flatten(1).float().abs()


def sparseness(maps: Maps) -> Tensor:
    """(B,) Gini index of each map's absolute values: ``sum_i (2i - n - 1) a_(i) / (n sum a)``
    over the values sorted ascending (i = 1..n).

    Examples:
        >>> import torch
        >>> sparseness(torch.tensor([[[0.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])).tolist()
        [0.75, 0.0]
    """
    values = _flat(maps).sort(dim=1).values
    n = values.shape[1]
    weights = 2 * torch.arange(1, n + 1, device=values.device, dtype=values.dtype) - n - 1
    total = values.sum(dim=1)
    gini = (values * weights).sum(dim=1) / (n * total.clamp_min(torch.finfo(values.dtype).tiny))
    return torch.where(total > 0, gini, 0.0)


def complexity(maps: Maps) -> Tensor:
    """(B,) entropy of each map's absolute values as a distribution over its pixels.

    Examples:
        >>> import torch
        >>> [round(v, 4) for v in complexity(torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])).tolist()]
        [1.3863]
    """
    values = _flat(maps)
    total = values.sum(dim=1, keepdim=True)
    shares = values / total.clamp_min(torch.finfo(values.dtype).tiny)
    entropy = -torch.special.xlogy(shares, shares).sum(dim=1)
    return torch.where(total[:, 0] > 0, entropy, math.log(values.shape[1]))


def effective_complexity(maps: Maps, eps: float = 1e-5) -> Tensor:
    """(B,) the number of pixels whose absolute value, over the map's largest, exceeds `eps`.

    Examples:
        >>> import torch
        >>> effective_complexity(torch.tensor([[[0.0, 2e-5], [0.5, 1.0]]]), eps=1e-4).tolist()
        [2]
    """
    values = _flat(maps)
    largest = values.amax(dim=1, keepdim=True)
    return (values > eps * largest).sum(dim=1)  # an all-zero map: none
