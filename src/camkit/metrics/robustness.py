"""Is the map stable where the model is? Each input is perturbed `samples` times by noise on
every value, the perturbed inputs are explained again (the method's own call, many perturbed
inputs at once), and each change of the map is measured (Frobenius norms):

- max- and average sensitivity (Yeh et al., 2019): uniform noise in [-radius, radius]; the
  largest and the mean relative change ``||a' - a|| / ||a||``;
- local Lipschitz estimate (Alvarez-Melis & Jaakkola, 2018): Gaussian noise of `std`; the
  largest ``||a' - a|| / ||x' - x||``;
- relative input and output stability (Agarwal et al., 2022): the map's change relative to
  itself over the input's relative change, or over the change of the logits.

Lower is more robust. As Quantus' `MaxSensitivity`, `AvgSensitivity`, `LocalLipschitzEstimate`,
`RelativeInputStability` and `RelativeOutputStability` with their defaults (no normalisation,
a prediction that changes under the noise kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from camkit.metrics._common import Maps, ModelScores, as_maps, as_targets

Explain = Callable[[Tensor, Tensor], Tensor]
"""(inputs (N, C, *spatial), targets (N,)) -> maps (N, *spatial)."""


@dataclass(frozen=True)
class Sensitivity:
    """Each input's relative map changes, (B, samples), and how far each perturbed input
    moved, ``||x' - x||`` (B, samples).

    Examples:
        >>> s = Sensitivity(torch.tensor([[0.1, 0.3], [0.2, 0.2]]), torch.ones(2, 2))
        >>> s.maximum.tolist(), s.average.tolist()
        ([0.30000001192092896, 0.20000000298023224], [0.20000000298023224, 0.20000000298023224])
    """

    changes: Tensor
    moved: Tensor
    map_changes: Tensor | None = None  # (B, samples) ||a' - a||, absolute

    @property
    def maximum(self) -> Tensor:
        """(B,) max-sensitivity: the largest change."""
        return self.changes.amax(dim=1)

    @property
    def average(self) -> Tensor:
        """(B,) average sensitivity: the mean change."""
        return self.changes.mean(dim=1)

    @property
    def lipschitz(self) -> Tensor:
        """(B,) local Lipschitz estimate: the largest ``||a' - a|| / (||x' - x|| + 1e-10)``."""
        absolute = self.changes if self.map_changes is None else self.map_changes
        return (absolute / (self.moved + 1e-10)).amax(dim=1)


def sensitivity(
    explain: Explain,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    samples: int = 200,
    radius: float = 0.2,
    std: float | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    rows_per_call: int = 256,
) -> Sensitivity:
    """How much each map changes when its input is perturbed by uniform noise.

    Args:
        explain: the method, as (inputs, targets) -> (N, *spatial) maps; it is called on up to
            `rows_per_call` perturbed inputs at once.
        x: (B, C, *spatial) inputs.
        maps: their maps (B, *spatial), or an Explanation.
        targets: (B,) the classes explained (default: the explanation's).
        samples: perturbations per input.
        radius: each value's noise is uniform in [-radius, radius] ...
        std: ... or, given, Gaussian of this standard deviation (the local Lipschitz
            estimate's).
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
    reference, classes = _reference(x, maps, targets, "sensitivity")
    batch = len(x)
    norms = reference.norm(dim=1)
    changes = torch.empty(batch, samples if noise is None else noise.shape[0], device=x.device)
    moved, absolute = torch.empty_like(changes), torch.empty_like(changes)
    for part, drawn, _, again in _noisy_maps(explain, x, classes, samples, radius, std, noise,
                                             generator, rows_per_call):  # fmt: skip
        difference = (again - reference[None]).norm(dim=2)  # (count, B)
        changes[:, part] = _relative(difference, norms).T
        absolute[:, part] = difference.T
        moved[:, part] = drawn.flatten(2).norm(dim=2).T
    return Sensitivity(changes, moved, absolute)


def _reference(x: Tensor, maps: Maps, targets: Tensor | None, name: str) -> tuple[Tensor, Tensor]:
    classes = as_targets(targets, maps, len(x))
    if classes is None:
        raise ValueError(f"{name} needs the targets (or an Explanation of them)")
    return as_maps(maps, x.shape[2:]).flatten(1).float(), classes


def _noisy_maps(
    explain: Explain,
    x: Tensor,
    classes: Tensor,
    samples: int,
    radius: float,
    std: float | None,
    noise: Tensor | None,
    generator: torch.Generator | None,
    rows_per_call: int,
) -> Iterator[tuple[slice, Tensor, Tensor, Tensor]]:
    """Per chunk of samples: their slice, the noise (count, B, C, *spatial), the perturbed
    inputs (count * B, ...) and their maps (count, B, pixels), explained in one call."""
    if noise is not None:
        samples = noise.shape[0]
    if samples < 1 or not radius >= 0:
        raise ValueError(f"samples {samples} and radius {radius}: give at least 1 and >= 0")
    batch = len(x)
    per_call = max(1, rows_per_call // batch)  # samples of every input explained in one call
    for first in range(0, samples, per_call):
        count = min(per_call, samples - first)
        if noise is None and std is not None:
            drawn = std * torch.randn((count, *x.shape), generator=generator, device=x.device)
        elif noise is None:
            drawn = torch.rand((count, *x.shape), generator=generator, device=x.device)
            drawn = (2 * drawn - 1) * radius
        else:
            drawn = noise[first : first + count].to(x)
        perturbed = (x[None] + drawn).flatten(0, 1)
        again = explain(perturbed, classes.repeat(count)).flatten(1).float()
        yield slice(first, first + count), drawn, perturbed, again.view(count, batch, -1)


@dataclass(frozen=True)
class Stability:
    """Relative input and output stability (Agarwal et al., 2022), each input's largest
    ratio over its samples (B,): the map's relative change over the input's (`input`) or over
    the logits' change (`output`).

    Examples:
        >>> Stability(torch.tensor([2.0]), torch.tensor([3.0])).input.tolist()
        [2.0]
    """

    input: Tensor
    output: Tensor


def relative_stability(
    explain: Explain,
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    samples: int = 200,
    radius: float = 0.2,
    noise: Tensor | None = None,
    eps: float = 1e-6,
    generator: torch.Generator | None = None,
    rows_per_call: int = 256,
) -> Stability:
    """Relative input stability, ``max ||(a - a') / a|| / ||(x - x') / x||``, and relative
    output stability, ``max ||(a - a') / a|| / ||h(x) - h(x')||`` with h the logits, over
    `samples` copies of each input with uniform noise in [-radius, radius] (`noise` gives it);
    a zero in a denominator counts as `eps`, as in the paper and Quantus. Lower is more stable.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> same = lambda inputs, targets: torch.ones(len(inputs), 2, 2)  # never changes
        >>> s = relative_stability(same, net, torch.rand(2, 1, 2, 2), torch.ones(2, 2, 2), 0,
        ...                        samples=3)
        >>> s.input.tolist(), s.output.tolist()
        ([0.0, 0.0], [0.0, 0.0])
    """
    reference, classes = _reference(x, maps, targets, "relative_stability")
    logits = ModelScores(model, score="logit", rows_per_pass=rows_per_call)
    clean = logits(x)
    samples = samples if noise is None else noise.shape[0]
    inputs = torch.empty(len(x), samples, device=x.device)
    outputs = torch.empty_like(inputs)

    def ratio(change: Tensor, base: Tensor) -> Tensor:
        return change / torch.where(base == 0, eps, base)

    for part, drawn, perturbed, again in _noisy_maps(explain, x, classes, samples, radius, None,
                                                     noise, generator, rows_per_call):  # fmt: skip
        maps_moved = ratio(reference[None] - again, reference[None]).norm(dim=2)
        moved = ratio(-drawn, x[None]).flatten(2).norm(dim=2)
        output = (clean[None] - logits(perturbed).view(len(drawn), len(x), -1)).norm(dim=2)
        inputs[:, part] = (maps_moved / torch.where(moved == 0, eps, moved)).T
        outputs[:, part] = (maps_moved / torch.where(output == 0, eps, output)).T
    return Stability(inputs.amax(dim=1), outputs.amax(dim=1))


def _relative(difference: Tensor, norms: Tensor) -> Tensor:
    """difference / norm; for an all-zero map, 0 when it stays zero and inf when it does not."""
    ratio = difference / norms.clamp_min(torch.finfo(norms.dtype).tiny)
    unchanged = torch.zeros_like(ratio)
    return torch.where(norms > 0, ratio, torch.where(difference > 0, torch.inf, unchanged))
