"""Deletion and insertion curves (Petsiuk et al., RISE, 2018) and their area under the curve.

Pixels are taken in order of relevance, the same number per step. Deletion replaces them by a
fill value (the data mean) and watches the class probability fall: a faithful map makes it fall
fast, so lower AUC is better. Insertion starts from a blurred input and puts the original pixels
back: higher AUC is better. Every step of every input is one row of a batched forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit.metrics._common import (
    Maps,
    ModelScores,
    as_maps,
    as_targets,
    like_input,
    pick,
    relevance_ranks,
)
from camkit.targets import OutputSelector, Score


@dataclass(frozen=True)
class Curve:
    """Class scores (B, steps + 1) after each step; `fractions` (steps + 1,) of pixels changed.

    Examples:
        >>> import torch
        >>> curve = Curve(torch.tensor([[1.0, 0.5, 0.0]]), torch.tensor([0.0, 0.5, 1.0]))
        >>> curve.auc.tolist(), curve.mean_auc
        ([0.5], 0.5)
    """

    scores: Tensor
    fractions: Tensor

    @property
    def auc(self) -> Tensor:
        """(B,) trapezoid area under each curve over the share of pixels changed."""
        return auc(self.scores, self.fractions)

    @property
    def mean_auc(self) -> float:
        """The mean area under the curves."""
        return float(self.auc.mean())


def auc(scores: Tensor, fractions: Tensor | None = None) -> Tensor:
    """Trapezoid rule over the last axis; evenly spaced on [0, 1] when `fractions` is None.

    Examples:
        >>> import torch
        >>> auc(torch.tensor([[1.0, 0.0, 0.0]])).tolist()
        [0.25]
    """
    if fractions is None:
        fractions = torch.linspace(0, 1, scores.shape[-1], device=scores.device)
    return torch.trapezoid(scores, fractions.to(scores), dim=-1)


def blur(x: Tensor, kernel: int = 11, sigma: float = 5.0) -> Tensor:
    """Gaussian blur of (B, C, H, W) inputs, the insertion start of RISE (kernel 11, sigma 5).

    Examples:
        >>> import torch
        >>> blur(torch.ones(1, 3, 16, 16)).allclose(torch.ones(1, 3, 16, 16))
        True
    """
    if x.dim() != 4:
        raise ValueError(f"blur takes (B, C, H, W) images, not shape {tuple(x.shape)}")
    radius = kernel // 2
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    channels = x.shape[1]
    # Separable: rows, then columns; replicated borders keep the edges from darkening.
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def _curve(
    mode: Literal["deletion", "insertion"],
    x: Tensor,
    maps: Maps,
    targets: Tensor | Sequence[int] | int | None,
    other: Tensor,
    steps: int,
    base: Tensor | None,
    scores: ModelScores,
    seed: int | None,
) -> Curve:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    relevance = as_maps(maps, x.shape[2:])
    batch, pixels = x.shape[0], relevance[0].numel()
    other = other.to(x).expand_as(x)
    clean = scores(x) if base is None else base.float()
    chosen = as_targets(targets, maps, batch)
    chosen = clean.argmax(dim=1) if chosen is None else chosen
    ranks = relevance_ranks(relevance, seed)
    counts = torch.arange(steps + 1, device=x.device) * pixels // steps  # pixels changed per step
    # Deletion starts from x (step 0), insertion ends at x (last step): that score is known.
    known = 0 if mode == "deletion" else steps
    todo = torch.tensor([s for s in range(steps + 1) if s != known], device=x.device)
    rows = torch.cartesian_prod(torch.arange(batch, device=x.device), todo)  # (image, step)
    curve = torch.empty(batch, steps + 1, device=x.device)
    curve[:, known] = pick(clean, chosen)
    flat_x, flat_other = x.flatten(2), other.flatten(2)
    for start in scores.starts(rows):
        image, step = rows[start : start + scores.rows_per_pass].unbind(1)
        changed = (ranks[image] < counts[step, None])[:, None]  # (N, 1, P)
        if mode == "deletion":
            inputs = torch.where(changed, flat_other[image], flat_x[image])
        else:
            inputs = torch.where(changed, flat_x[image], flat_other[image])
        probabilities = scores.chunk(inputs.view(-1, *x.shape[1:]))
        curve[image, step] = pick(probabilities, chosen[image])
    return Curve(curve, counts.float() / pixels)


def deletion(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | Sequence[int] | int | None = None,
    *,
    steps: int = 32,
    fill: float | Tensor = 0.0,
    base: Tensor | None = None,
    score: Score = "softmax",
    output: OutputSelector = None,
    rows_per_pass: int = 256,
    seed: int | None = 0,
) -> Curve:
    """Deletion curve: replace the most relevant pixels by `fill`, a 1/`steps` share per step.

    Args:
        model: the classifier the maps explain.
        x: (B, C, *spatial) inputs.
        maps: (B, *spatial) maps, or an Explanation with one target per input.
        targets: (B,) classes; default the explanation's, else the predicted class.
        steps: number of steps; step i has replaced i/steps of the pixels (rounded down).
        fill: the value of deleted pixels: a scalar, a (C,) value per channel, or a tensor that
            broadcasts to x. 0 is the data mean for normalised inputs, as in RISE.
        base: (B, classes) scores of `x` already computed (reuses that forward pass).
        score: "softmax" (RISE) or "logit".
        seed: orders pixels of equal relevance at random, repeatably (None: pixel order).

    Examples:
        >>> import torch, camkit
        >>> from camkit.metrics import deletion
        >>> net = camkit.models.example_net(classes=3)
        >>> x = torch.rand(2, 3, 8, 8)
        >>> curve = deletion(net, x, camkit.GradCAM(net)(x), steps=4)
        >>> curve.scores.shape, curve.fractions.tolist()
        (torch.Size([2, 5]), [0.0, 0.25, 0.5, 0.75, 1.0])
    """
    scores = ModelScores(model, score=score, output=output, rows_per_pass=rows_per_pass)
    return _curve("deletion", x, maps, targets, like_input(fill, x), steps, base, scores, seed)


def insertion(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | Sequence[int] | int | None = None,
    *,
    steps: int = 32,
    start: Tensor | None = None,
    base: Tensor | None = None,
    score: Score = "softmax",
    output: OutputSelector = None,
    rows_per_pass: int = 256,
    seed: int | None = 0,
) -> Curve:
    """Insertion curve: from `start` (default `blur(x)`), put the most relevant pixels back.

    Arguments as for `deletion`; `start` is the (B, C, *spatial) input before any insertion.

    Examples:
        >>> import torch, camkit
        >>> from camkit.metrics import insertion
        >>> net = camkit.models.example_net(classes=3)
        >>> x = torch.rand(2, 3, 16, 16)
        >>> curve = insertion(net, x, camkit.GradCAM(net)(x), steps=4)
        >>> bool((curve.auc >= 0).all() and (curve.auc <= 1).all())
        True
    """
    start_ = blur(x) if start is None else start
    scores = ModelScores(model, score=score, output=output, rows_per_pass=rows_per_pass)
    return _curve("insertion", x, maps, targets, start_, steps, base, scores, seed)
