"""Is the map stable where the model is? Max- and average sensitivity (Yeh et al., 2019).

Each input is perturbed `samples` times by uniform noise in [-radius, radius] on every value,
the perturbed inputs are explained again (the method's own call, many perturbed inputs at
once), and each change of the map is measured relative to the map: ``||a' - a|| / ||a||``
(Frobenius norms). Max-sensitivity is the largest change over the samples, average
sensitivity their mean: lower is more robust. As Quantus' `MaxSensitivity` and
`AvgSensitivity` with their defaults (no normalisation, a prediction that changes under the
noise kept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from camkit.metrics._common import Maps, as_maps, as_targets

Explain = Callable[[Tensor, Tensor], Tensor]
"""(inputs (N, C, *spatial), targets (N,)) -> maps (N, *spatial)."""


@dataclass(frozen=True)
class Sensitivity:
    """Each input's relative map changes, (B, samples).

    Examples:
        >>> s = Sensitivity(torch.tensor([[0.1, 0.3], [0.2, 0.2]]))
        >>> s.maximum.tolist(), s.average.tolist()
        ([0.30000001192092896, 0.20000000298023224], [0.20000000298023224, 0.20000000298023224])
    """

    changes: Tensor

    @property
    def maximum(self) -> Tensor:
        """(B,) max-sensitivity: the largest change."""
        return self.changes.amax(dim=1)

    @property
    def average(self) -> Tensor:
        """(B,) average sensitivity: the mean change."""
        return self.changes.mean(dim=1)


def sensitivity(
    explain: Explain,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    samples: int = 200,
    radius: float = 0.2,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    rows_per_call: int = 256,
) -> Sensitivity:
    """How much each map changes when its input is perturbed by uniform noise.

    Args:
        explain: the method, as (inputs, targets) -> (N, *spatial) maps; it is called on up to
            `rows_per_call` perturbed inputs at once.
        x: (B, C, *spatial) inputs; maps: their maps (B, *spatial), or an Explanation.
        targets: (B,) the classes explained (default: the explanation's).
        samples, radius: perturbations per input, each value's noise in [-radius, radius].
        noise: (samples, B, C, *spatial) the noise itself, instead of drawing it.

    Examples:
        >>> import torch
        >>> double = lambda inputs, targets: 2 * inputs[:, 0]  # a map that is twice the input
        >>> x = torch.ones(1, 1, 2, 2)
        >>> s = sensitivity(double, x, double(x, None), torch.zeros(1, dtype=torch.long),
        ...                 noise=torch.full((1, 1, 1, 2, 2), 0.1))
        >>> [round(v, 4) for v in s.average.tolist()]  # 0.2 everywhere against 2: a 10% change
        [0.1]
    """
    reference = as_maps(maps, x.shape[2:]).flatten(1).float()
    classes = as_targets(targets, maps, len(x))
    if classes is None:
        raise ValueError("sensitivity needs the targets (or an Explanation of them)")
    if noise is not None:
        samples = noise.shape[0]
    if samples < 1 or not radius >= 0:
        raise ValueError(f"samples {samples} and radius {radius}: give at least 1 and >= 0")
    batch = len(x)
    norms = reference.norm(dim=1)
    changes = torch.empty(batch, samples, device=x.device)
    per_call = max(1, rows_per_call // batch)  # samples of every input explained in one call
    for first in range(0, samples, per_call):
        count = min(per_call, samples - first)
        if noise is None:
            drawn = torch.rand((count, *x.shape), generator=generator, device=x.device)
            drawn = (2 * drawn - 1) * radius
        else:
            drawn = noise[first : first + count].to(x)
        perturbed = (x[None] + drawn).flatten(0, 1)
        again = explain(perturbed, classes.repeat(count)).flatten(1).float()
        difference = (again.view(count, batch, -1) - reference[None]).norm(dim=2)  # (count, B)
        changes[:, first : first + count] = _relative(difference, norms).T
    return Sensitivity(changes)


def _relative(difference: Tensor, norms: Tensor) -> Tensor:
    """difference / norm; for an all-zero map, 0 when it stays zero and inf when it does not."""
    ratio = difference / norms.clamp_min(torch.finfo(norms.dtype).tiny)
    unchanged = torch.zeros_like(ratio)
    return torch.where(norms > 0, ratio, torch.where(difference > 0, torch.inf, unchanged))
