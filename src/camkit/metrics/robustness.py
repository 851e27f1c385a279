"""Is the map stable where the model is? Each input is perturbed `samples` times by noise on
every value, the perturbed inputs are explained again (the method's own call, many perturbed
inputs at once), and each change of the map is measured (Frobenius norms):

- max- and average sensitivity (Yeh et al., 2019): uniform noise in [-radius, radius]; the
  largest and the mean relative change ``||a' - a|| / ||a||``;
- local Lipschitz estimate (Alvarez-Melis & Jaakkola, 2018): Gaussian noise of `std`; the
  largest ``||a' - a|| / ||x' - x||``;
- relative input, output and representation stability (Agarwal et al., 2022): the map's
  change relative to itself over the input's relative change, the logits' change, or the
  relative change of chosen layers' outputs;
- continuity (Montavon et al., 2018): the map's change over the input's along horizontal
  translations;
- consistency (Dasgupta et al., 2022): inputs whose maps discretise alike are predicted
  alike.

Lower is more robust. As Quantus' `MaxSensitivity`, `AvgSensitivity`, `LocalLipschitzEstimate`,
`RelativeInputStability` and `RelativeOutputStability` with their defaults (no normalisation,
a prediction that changes under the noise kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from camkit.metrics._common import Maps, as_maps, as_targets
from camkit.metrics._common import rows_per_call as fitting_rows
from camkit.metrics.stepwise import square_sums
from camkit.targets import select_output

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
    for part, drawn, _, again in _noisy_maps(
        explain, x, classes, samples, radius, std, noise, generator, rows_per_call
    ):
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
    # samples of every input explained in one call (on a CPU, about the images that fit)
    per_call = max(1, fitting_rows(x, rows_per_call) // batch)
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
    """Relative input, output and representation stability (Agarwal et al., 2022), each
    input's largest ratio over its samples (B,): the map's relative change over the input's
    relative change (`input`), over the logits' change (`output`), over the relative change
    of the chosen layers' outputs (`representation`, None when no layer was chosen).

    Examples:
        >>> Stability(torch.tensor([2.0]), torch.tensor([3.0])).input.tolist()
        [2.0]
    """

    input: Tensor
    output: Tensor
    representation: Tensor | None = None


@torch.no_grad()
def _forward(
    model: nn.Module, inputs: Tensor, layers: Sequence[str], rows: int
) -> tuple[Tensor, Tensor | None]:
    """The logits (N, classes) and the named layers' outputs, flattened and joined (N, D)."""
    modules = [model.get_submodule(name) for name in layers]
    captured: list[Tensor] = []

    def keep(_: nn.Module, __: object, output: Tensor) -> None:
        captured.append(output.detach().flatten(1).float().clone())  # before in-place ops

    handles = [module.register_forward_hook(keep) for module in modules]
    logits, representations = [], []
    rows = fitting_rows(inputs, rows)
    # oneDNN's layout, as ModelScores takes it; not with layers read: their relative change
    # divides by values near 0, where the layouts' rounding differs
    fast = inputs.device.type == "cpu" and inputs.dim() == 4 and not modules
    try:
        for start in range(0, len(inputs), rows):
            captured.clear()
            chunk = inputs[start : start + rows]
            chunk = chunk.contiguous(memory_format=torch.channels_last) if fast else chunk
            logits.append(select_output(model(chunk)).float())
            if modules:
                representations.append(torch.cat(captured, dim=1))
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(logits), torch.cat(representations) if modules else None


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
    layers: Sequence[str] = (),
    eps: float = 1e-6,
    generator: torch.Generator | None = None,
    rows_per_call: int = 256,
) -> Stability:
    """Relative input stability, ``max ||(a - a') / a|| / ||(x - x') / x||``, relative
    output stability, ``max ||(a - a') / a|| / ||h(x) - h(x')||`` with h the logits, and
    (given `layers`, module names) relative representation stability, over
    ``||(L(x) - L(x')) / L(x)||`` with L their outputs; over `samples` copies of each input
    with uniform noise in [-radius, radius] (`noise` gives it). A zero in a denominator
    counts as `eps`, as in the paper and Quantus. Lower is more stable.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> same = lambda inputs, targets: torch.ones(len(inputs), 2, 2)  # never changes
        >>> s = relative_stability(same, net, torch.rand(2, 1, 2, 2), torch.ones(2, 2, 2), 0,
        ...                        samples=3, layers=["1"])
        >>> s.input.tolist(), s.output.tolist(), s.representation.tolist()
        ([0.0, 0.0], [0.0, 0.0], [0.0, 0.0])
    """
    reference, classes = _reference(x, maps, targets, "relative_stability")
    clean, held = _forward(model, x, layers, rows_per_call)
    samples = samples if noise is None else noise.shape[0]
    ratios = torch.empty(3 if layers else 2, len(x), samples, device=x.device)

    def relative(change: Tensor, base: Tensor) -> Tensor:
        return change / torch.where(base == 0, eps, base)

    def over(moved: Tensor) -> Tensor:
        return torch.where(moved == 0, eps, moved)

    for part, drawn, perturbed, again in _noisy_maps(
        explain, x, classes, samples, radius, None, noise, generator, rows_per_call
    ):
        count = len(drawn)
        maps_moved = relative(reference[None] - again, reference[None]).norm(dim=2)
        logits, layer_outputs = _forward(model, perturbed, layers, rows_per_call)
        moved = relative(-drawn, x[None]).flatten(2).norm(dim=2)
        ratios[0, :, part] = (maps_moved / over(moved)).T
        output = (clean[None] - logits.view(count, len(x), -1)).norm(dim=2)
        ratios[1, :, part] = (maps_moved / over(output)).T
        if held is not None and layer_outputs is not None:
            change = held[None] - layer_outputs.view(count, len(x), -1)
            ratios[2, :, part] = (maps_moved / over(relative(change, held[None]).norm(dim=2))).T
    largest = ratios.amax(dim=2)
    return Stability(largest[0], largest[1], largest[2] if layers else None)


def _relative(difference: Tensor, norms: Tensor) -> Tensor:
    """difference / norm; for an all-zero map, 0 when it stays zero and inf when it does not."""
    ratio = difference / norms.clamp_min(torch.finfo(norms.dtype).tiny)
    unchanged = torch.zeros_like(ratio)
    return torch.where(norms > 0, ratio, torch.where(difference > 0, torch.inf, unchanged))


def translated(x: Tensor, shift: int, fill: Tensor) -> Tensor:
    """`x` moved `shift` pixels along its last axis (right when positive), the uncovered
    columns set to `fill` (broadcasting against x).

    Examples:
        >>> translated(torch.tensor([[[[1.0, 2.0, 3.0]]]]), 1, torch.tensor(0.0)).tolist()
        [[[[0.0, 1.0, 2.0]]]]
    """
    width = x.shape[-1]
    source = torch.arange(width, device=x.device) - shift
    inside = (source >= 0) & (source < width)
    moved = x.index_select(-1, source.clamp(0, width - 1))
    return torch.where(inside, moved, fill.to(x))


def continuity_shifts(width: int, steps: int) -> list[int]:
    """The translations Quantus' `Continuity` takes: `steps` of ``(2 width + 1) // steps``
    pixels, from the left edge.

    Examples:
        >>> continuity_shifts(96, 28)[:3], continuity_shifts(96, 28)[-1]
        ([-90, -84, -78], 72)
    """
    if not 1 <= steps <= 2 * width + 1:
        raise ValueError(f"steps {steps}: give 1 to {2 * width + 1} for a width of {width}")
    step = (2 * width + 1) // steps
    return [-width + step * k for k in range(1, steps + 1)]


def continuity(
    explain: Explain,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    steps: int = 28,
    fill: float | Tensor = 0.0,
    rows_per_call: int = 256,
) -> Tensor:
    """(B,) continuity (Montavon et al., 2018), as Quantus measures it: the largest
    ``||a' - a||_1 / (||x' - x||_2 + 1e-9)`` over `steps` horizontal translations of each
    input (`continuity_shifts`), the uncovered columns set to `fill` (a number, (C,) or
    (B, C or 1, 1, 1)); the translated inputs are explained `rows_per_call` at a time.
    Lower is smoother.

    Examples:
        >>> import torch
        >>> still = lambda inputs, targets: torch.ones(len(inputs), 4, 4)  # never moves
        >>> continuity(still, torch.rand(2, 1, 4, 4), torch.ones(2, 4, 4), 0, steps=3).tolist()
        [0.0, 0.0]
    """
    reference, classes = _reference(x, maps, targets, "continuity")
    value = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    value = value.view(1, -1, *[1] * (x.dim() - 2)) if value.dim() == 1 else value
    shifts = continuity_shifts(x.shape[-1], steps)
    moved = torch.stack([translated(x, shift, value) for shift in shifts])  # (S, B, ...)
    flat = moved.flatten(0, 1)
    wanted, rows = classes.repeat(len(shifts)), fitting_rows(x, rows_per_call)
    again = torch.cat(
        [explain(flat[i : i + rows], wanted[i : i + rows]) for i in range(0, len(flat), rows)]
    )
    again = again.flatten(1).float().view(len(shifts), len(x), -1)
    maps_moved = (again - reference[None]).abs().sum(dim=2)
    inputs_moved = (moved - x[None]).flatten(2).norm(dim=2)
    ratio: Tensor = maps_moved / (inputs_moved + 1e-9)
    return ratio.amax(dim=0)


def top_units(maps: Tensor, n: int = 1, patch: int = 1) -> Tensor:
    """(B, n) the n most relevant pixels (or `patch`-pixel squares, by their sum; raster
    numbering) of each map, in ascending order: the map discretised, as consistency compares
    maps. Ties go to the lower index.

    Examples:
        >>> top_units(torch.tensor([[[0.1, 0.9], [0.5, 0.2]]]), n=2).tolist()
        [[1, 2]]
    """
    scores = maps.flatten(1) if patch == 1 else square_sums(maps, patch).flatten(1)
    order = scores.argsort(dim=1, descending=True, stable=True)
    return order[:, :n].sort(dim=1).values


def consistency(maps: Maps, predicted: Tensor, *, n: int = 1, patch: int = 1) -> Tensor:
    """(B,) consistency (Dasgupta et al., 2022), within a batch: among the other inputs whose
    maps discretise alike (the same `top_units`), the share predicted the same class (0 where
    none does).

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[[0.0, 1.0]], [[0.1, 0.8]], [[1.0, 0.0]]])
        >>> consistency(maps, torch.tensor([2, 2, 2])).tolist()  # two peak right: agree
        [1.0, 1.0, 0.0]
    """
    labels = top_units(as_maps(maps).float(), n, patch)
    alike = (labels[None] == labels[:, None]).all(dim=2)
    alike &= ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    same = predicted.to(labels.device)[None] == predicted.to(labels.device)[:, None]
    count = alike.sum(dim=1)
    return torch.where(count > 0, (alike & same).sum(dim=1) / count.clamp_min(1), 0.0).float()
