"""Faithfulness by features taken in the map's order: pixels (or square patches) are ranked by
the map, and groups of them, one step each, are filled, kept or replaced by noise.

- Faithfulness estimate (Alvarez-Melis & Jaakkola, 2018): each group alone takes the fill
  value; the Pearson correlation, over the groups, of the map's sum over a group and the drop
  of the target's logit.
- Monotonicity (Arya et al., 2019): from an input that is all fill, groups are put back from
  the least to the most relevant; 1 when the target's probability never falls.
- Monotonicity correlation (Nguyen & Martinez, 2020): each group, from the least relevant,
  takes `samples` random values; the Spearman correlation of the map's sum over a group and
  the variance of the target's probability it causes (relative to the clean one).
- Region perturbation (Samek et al., 2017) and selectivity (Montavon et al., 2018): square
  patches ranked by their map sum are filled one more per step, the most relevant first; the
  drop of the target's probability (its mean is AOPC) and the probability itself (its area).
- IROF (Rieger & Hansen, 2020): superpixels ranked by their mean map value are filled one more
  per step; the area over the probability relative to the clean one.

Every (input, step) pair is one row of a batched pass, on the inputs' device. A group is a set
of pixels (all their channels), as in the papers; Quantus 0.6.0 ranks every channel value
apart (docs/concepts.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit.metrics._common import (
    Maps,
    ModelScores,
    as_maps,
    as_targets,
    like_input,
    pearson,
    pick,
    relevance_ranks,
)
from camkit.metrics.sanity import spearman
from camkit.targets import Score

Targets = Tensor | Sequence[int] | int | None


def patch_ranks(maps: Tensor, patch: int = 1, seed: int | None = 0) -> Tensor:
    """(B, P) each pixel's rank in the map's order, 0 = most relevant: of the pixel itself
    (`patch` 1), or of the `patch` x `patch` square it lies in, squares ranked by their map sum
    (edge squares that overhang the image count what lies inside it).

    Examples:
        >>> import torch
        >>> maps = torch.tensor([[[0.0, 0.1, 0.0, 0.0], [0.2, 0.3, 0.0, 0.9]]])
        >>> patch_ranks(maps, patch=2).view(2, 4).tolist()
        [[1, 1, 0, 0], [1, 1, 0, 0]]
    """
    if patch < 1:
        raise ValueError(f"patch {patch}: give a side of at least 1 pixel")
    if patch == 1:
        return relevance_ranks(maps, seed)
    height, width = maps.shape[1:]
    sums = square_sums(maps, patch)
    ranks = relevance_ranks(sums, seed).view_as(sums)
    ranks = ranks.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)
    return ranks[:, :height, :width].flatten(1)


def square_sums(maps: Tensor, patch: int) -> Tensor:
    """(B, ceil(H / patch), ceil(W / patch)) the map's sum over each `patch`-pixel square
    (in float64; an edge square counts what lies inside the image).

    Examples:
        >>> import torch
        >>> square_sums(torch.ones(1, 3, 3), 2).tolist()
        [[[4.0, 2.0], [2.0, 1.0]]]
    """
    if maps.dim() != 3:
        raise ValueError(f"squares need (B, H, W) maps, not shape {tuple(maps.shape)}")
    return F.avg_pool2d(
        maps[:, None].double(),
        patch,
        stride=patch,
        ceil_mode=True,
        count_include_pad=False,
        divisor_override=1,
    )[:, 0]


def step_scores(
    scores: ModelScores,
    x: Tensor,
    ranks: Tensor,
    bounds: Tensor,
    targets: Tensor,
    fill: Tensor,
    *,
    keep: bool = False,
) -> Tensor:
    """(B, S) the target's score with, at step s, the pixels whose rank lies in
    [bounds[s, 0], bounds[s, 1]) set to `fill` (`keep`: every other pixel set to it).

    `fill` is a number, (C,) a value per channel, (B, C or 1, 1, ...) a value per input, or
    (B, S) one value for each row."""
    batch, steps = len(x), len(bounds)
    rows = torch.cartesian_prod(
        torch.arange(batch, device=x.device), torch.arange(steps, device=x.device)
    )
    result = torch.empty(batch, steps, device=x.device)
    flat_x = x.flatten(2)
    per_row = fill.shape == (batch, steps) and x.dim() != 2
    per_input = fill.dim() == x.dim() and fill.shape[0] == batch
    shared = like_input(fill, x).flatten(2)[0] if fill.dim() == 1 else fill.to(x)
    for start in scores.starts(rows):
        image, step = rows[start : start + scores.rows_per_pass].unbind(1)
        rank = ranks[image]
        chosen = (rank >= bounds[step, :1]) & (rank < bounds[step, 1:])
        if keep:
            chosen = ~chosen
        if per_row:
            value = fill[image, step].view(-1, 1, 1).to(x)
        else:
            value = fill[image].flatten(2).to(x) if per_input else shared
        inputs = torch.where(chosen[:, None], value, flat_x[image])
        result[image, step] = pick(scores.chunk(inputs.view(-1, *x.shape[1:])), targets[image])
    return result


def _groups(pixels: int, per_step: int, cumulative: bool, device: torch.device) -> Tensor:
    """(S, 2) rank bounds of ceil(pixels / per_step) steps of `per_step` pixels each."""
    if not 1 <= per_step <= pixels:
        raise ValueError(f"{per_step} pixels a step: give 1 to {pixels} (the input's pixels)")
    ends = torch.arange(1, math.ceil(pixels / per_step) + 1, device=device) * per_step
    ends = ends.clamp_max(pixels)
    starts = torch.zeros_like(ends) if cumulative else ends - per_step
    return torch.stack([starts, ends], dim=1)


def _prepared(x: Tensor, maps: Maps, targets: Targets, name: str) -> tuple[Tensor, Tensor]:
    values = as_maps(maps, x.shape[2:]).float()
    classes = as_targets(targets, maps, len(x))
    if classes is None:
        raise ValueError(f"{name} needs the targets (or an Explanation of them)")
    return values, classes


def _group_sums(values: Tensor, ranks: Tensor, bounds: Tensor) -> Tensor:
    """(B, S) the map's sum over each step's group."""
    by_rank = torch.zeros_like(values.flatten(1)).scatter_(1, ranks, values.flatten(1))
    cumulative = F.pad(by_rank.double().cumsum(dim=1), (1, 0))
    return (cumulative[:, bounds[:, 1]] - cumulative[:, bounds[:, 0]]).float()


def faithfulness_estimate(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Targets = None,
    *,
    per_step: int = 1,
    fill: float | Tensor = 0.0,
    score: Score = "logit",
    seed: int | None = 0,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B,) faithfulness estimate: the Pearson correlation, over groups of `per_step` pixels in
    the map's order, of the map's sum over a group and the drop of the target's `score` when
    that group alone takes `fill` (one pass a group).

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> maps = net[1].weight[0].detach().view(1, 4, 4)  # each pixel's worth on a ones input
        >>> r = faithfulness_estimate(net, torch.ones(1, 1, 4, 4), maps, 0)
        >>> [round(v, 4) for v in r.tolist()]
        [1.0]
    """
    values, classes = _prepared(x, maps, targets, "faithfulness_estimate")
    scores = ModelScores(model, score=score, rows_per_pass=rows_per_pass)
    ranks = relevance_ranks(values, seed)
    bounds = _groups(ranks.shape[1], per_step, cumulative=False, device=x.device)
    clean = pick(scores(x), classes)
    perturbed = step_scores(scores, x, ranks, bounds, classes, torch.as_tensor(fill).to(x))
    return pearson(_group_sums(values, ranks, bounds), clean[:, None] - perturbed).float()


def monotonicity(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Targets = None,
    *,
    per_step: int = 1,
    fill: float | Tensor = 0.0,
    score: Score = "softmax",
    seed: int | None = 0,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B,) monotonicity (Arya et al.): 1.0 where the target's `score` never falls as groups of
    `per_step` pixels are put back into an all-`fill` input, least relevant first, else 0.0.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 2, 3, 4], [0, 0, 0, 0]]))
        >>> x = torch.ones(1, 1, 2, 2)
        >>> monotonicity(net, x, torch.tensor([[[1.0, 2], [3, 4]]]), 0).tolist()
        [1.0]
    """
    values, classes = _prepared(x, maps, targets, "monotonicity")
    scores = ModelScores(model, score=score, rows_per_pass=rows_per_pass)
    ranks = relevance_ranks(-values, seed)  # 0 = least relevant: put back first
    bounds = _groups(ranks.shape[1], per_step, cumulative=True, device=x.device)
    curve = step_scores(scores, x, ranks, bounds, classes, torch.as_tensor(fill).to(x), keep=True)
    return (curve.diff(dim=1) >= 0).all(dim=1).float()


def monotonicity_correlation(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Targets = None,
    *,
    per_step: int = 1,
    samples: int = 10,
    low: float = 0.0,
    high: float = 1.0,
    eps: float = 1e-5,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    score: Score = "softmax",
    seed: int | None = 0,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B,) monotonicity correlation (Nguyen & Martinez): the Spearman correlation, over
    groups of `per_step` pixels from the least relevant, of the map's sum over a group and
    ``mean((f(x') - f(x))^2) / f(x)^2`` over `samples` copies whose group takes one random
    value, uniform in [`low`, `high`] (`noise` (B, groups, samples) gives them instead; the
    division is skipped where |f(x)| < `eps`).

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> maps = torch.rand(3, 2, 2)
        >>> monotonicity_correlation(net, torch.rand(3, 1, 2, 2), maps, 0, samples=4).shape
        torch.Size([3])
    """
    values, classes = _prepared(x, maps, targets, "monotonicity_correlation")
    scores = ModelScores(model, score=score, rows_per_pass=rows_per_pass)
    ranks = relevance_ranks(-values, seed)
    bounds = _groups(ranks.shape[1], per_step, cumulative=False, device=x.device)
    groups = len(bounds)
    if noise is None:
        if samples < 1:
            raise ValueError(f"samples {samples}: give at least 1")
        noise = torch.rand(len(x), groups, samples, generator=generator, device=x.device)
        noise = low + (high - low) * noise
    samples = noise.shape[2]
    clean = pick(scores(x), classes).double()
    perturbed = step_scores(
        scores, x, ranks, bounds.repeat_interleave(samples, dim=0), classes, noise.flatten(1).to(x)
    )
    spread = perturbed.double().view(len(x), groups, samples) - clean[:, None, None]
    weight = torch.where(clean.abs() >= eps, 1 / clean.abs().clamp_min(eps), 1.0).square()
    variances = spread.square().mean(dim=2) * weight[:, None]
    return spearman(_group_sums(values, ranks, bounds), variances)


def patch_curve(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Targets = None,
    *,
    patch: int = 8,
    regions: int | None = None,
    fill: float | Tensor = 0.0,
    score: Score = "softmax",
    seed: int | None = 0,
    rows_per_pass: int = 256,
) -> tuple[Tensor, Tensor]:
    """The clean score (B,) and the target's score (B, L) after each of the first L = `regions`
    (default all) `patch` x `patch` squares, the largest map sum first, takes `fill`.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
        >>> clean, curve = patch_curve(net, torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8), 0, patch=4)
        >>> clean.shape, curve.shape
        (torch.Size([2]), torch.Size([2, 4]))
    """
    values, classes = _prepared(x, maps, targets, "patch_curve")
    scores = ModelScores(model, score=score, rows_per_pass=rows_per_pass)
    ranks = patch_ranks(values, patch, seed)
    squares = int(ranks.max()) + 1
    count = squares if regions is None else regions
    if not 1 <= count <= squares:
        raise ValueError(f"regions {count}: give 1 to {squares} (the {patch}-pixel squares)")
    ends = torch.arange(1, count + 1, device=x.device)
    bounds = torch.stack([torch.zeros_like(ends), ends], dim=1)
    clean = pick(scores(x), classes)
    return clean, step_scores(scores, x, ranks, bounds, classes, torch.as_tensor(fill).to(x))


def region_perturbation(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Targets = None,
    *,
    patch: int = 8,
    regions: int = 100,
    fill: float | Tensor = 0.0,
    seed: int | None = 0,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B, L) region perturbation (most relevant first): the drop of the target's probability
    after each of the first `regions` squares (at most all of them) takes `fill`. AOPC is
    ``curve.sum(1) / (L + 1)``, the paper's mean over the L steps and the unperturbed one.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
        >>> region_perturbation(net, torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8), 0,
        ...                     patch=4).shape
        torch.Size([2, 4])
    """
    values = as_maps(maps, x.shape[2:])
    squares = math.prod(math.ceil(side / patch) for side in values.shape[1:])
    clean, curve = patch_curve(
        model,
        x,
        maps,
        targets,
        patch=patch,
        fill=fill,
        seed=seed,
        regions=min(regions, squares),
        rows_per_pass=rows_per_pass,
    )
    return clean[:, None] - curve


def selectivity(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Targets = None,
    *,
    patch: int = 8,
    fill: float | Tensor = 0.0,
    seed: int | None = 0,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B, L + 1) selectivity curve: the target's probability on the clean input, then after
    each of the L squares, most relevant first, takes `fill`; a faithful map makes it fall
    fast (lower area under it is better).

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
        >>> selectivity(net, torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8), 0, patch=4).shape
        torch.Size([2, 5])
    """
    clean, curve = patch_curve(
        model, x, maps, targets, patch=patch, fill=fill, seed=seed, rows_per_pass=rows_per_pass
    )
    return torch.cat([clean[:, None], curve], dim=1)


@dataclass(frozen=True)
class Irof:
    """IROF's curves: the target's probability over the clean one (B, S) after each of the
    largest-mean segments is filled, and each input's segment count (B,) (steps past it
    repeat the last value and do not count).

    Examples:
        >>> import torch
        >>> result = Irof(torch.tensor([[0.5, 0.0, 0.0]]), torch.tensor([2]))
        >>> result.aoc.tolist(), result.score.tolist()
        ([1.75], [0.875])
    """

    curves: Tensor
    segments: Tensor

    @property
    def aoc(self) -> Tensor:
        """(B,) Quantus' area over the curve: segments - trapezoid area (steps of 1)."""
        counted = (
            torch.arange(self.curves.shape[1], device=self.curves.device) < self.segments[:, None]
        )
        kept = self.curves.double() * counted
        return self.segments.double() - torch.trapezoid(kept, dim=1)

    @property
    def score(self) -> Tensor:
        """(B,) the area over the curve per segment: 0 (nothing changes) to about 1."""
        return self.aoc / self.segments.double()


def irof(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Targets = None,
    *,
    segments: Tensor,
    fill: float | Tensor = 0.0,
    seed: int | None = 0,
    rows_per_pass: int = 256,
) -> Irof:
    """IROF (Rieger & Hansen, 2020): the segments (B, H, W labels, e.g. `superpixels`) ranked
    by their mean map value are filled one more per step, the largest first, and the target's
    probability is followed relative to the clean one (one pass a step).

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> halves = torch.zeros(2, 4, 4, dtype=torch.long)
        >>> halves[:, :, 2:] = 1
        >>> result = irof(net, torch.rand(2, 1, 4, 4), torch.rand(2, 4, 4), 0, segments=halves)
        >>> result.curves.shape, result.segments.tolist()
        (torch.Size([2, 2]), [2, 2])
    """
    values, classes = _prepared(x, maps, targets, "irof")
    labels = segments.to(x.device).flatten(1).long()
    if labels.shape != values.flatten(1).shape:
        raise ValueError(
            f"segments of shape {tuple(segments.shape)} for maps of shape "
            f"{tuple(values.shape)}: give one label a pixel"
        )
    counts = labels.amax(dim=1) + 1
    largest = int(counts.max())
    sums = torch.zeros(len(x), largest, dtype=torch.float64, device=x.device)
    sums.scatter_add_(1, labels, values.flatten(1).double())
    sizes = torch.zeros_like(sums).scatter_add_(
        1, labels, torch.ones_like(sums[:, :1]).expand_as(labels)
    )
    means = torch.where(sizes > 0, sums / sizes.clamp_min(1), -torch.inf)  # absent: last
    ranks = relevance_ranks(means, seed).gather(1, labels)  # each pixel: its segment's rank
    ends = torch.arange(1, largest + 1, device=x.device)
    bounds = torch.stack([torch.zeros_like(ends), ends], dim=1)
    scores = ModelScores(model, score="softmax", rows_per_pass=rows_per_pass)
    clean = pick(scores(x), classes)
    curve = step_scores(scores, x, ranks, bounds, classes, torch.as_tensor(fill).to(x))
    return Irof(curve / clean[:, None], counts)
