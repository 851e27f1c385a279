"""Average Drop, Increase in Confidence and Win % (Chattopadhay et al., Grad-CAM++, 2018).

The model sees the input masked by the map, ``fill + (x - fill) * map`` (``fill=0``
is the paper's ``x * map``; on normalised inputs 0 is the data mean). With Y the class score on the
input and O on the masked input, Average Drop = mean of max(0, Y - O) / Y, Increase in Confidence
= share of inputs with O > Y, both in %.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from camkit.metrics._common import (
    Maps,
    ModelScores,
    as_maps,
    as_targets,
    like_input,
    pearson,
    pick,
)
from camkit.targets import OutputSelector, Score


@dataclass(frozen=True)
class Confidence:
    """Scores of the explained class on each input (`base`) and on the map-masked input (`masked`).

    Examples:
        >>> import torch
        >>> result = Confidence(base=torch.tensor([0.5, 0.4]), masked=torch.tensor([0.25, 0.6]))
        >>> result.average_drop, result.increase_in_confidence, result.drop
        (25.0, 50.0, tensor([ 0.5000, -0.5000]))
    """

    base: Tensor
    masked: Tensor

    @property
    def drop(self) -> Tensor:
        """(B,) signed relative change (Y - O) / Y: positive when masking lowers the score."""
        return (self.base - self.masked) / self.base

    @property
    def average_drop(self) -> float:
        """Average Drop %, lower is better."""
        return float(self.drop.clamp_min(0).mean() * 100)

    @property
    def increase_in_confidence(self) -> float:
        """Increase in Confidence %: share of inputs scored higher when masked; higher is better."""
        return float((self.masked > self.base).float().mean() * 100)


def confidence(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | Sequence[int] | int | None = None,
    *,
    fill: float | Tensor = 0.0,
    base: Tensor | None = None,
    score: Score = "softmax",
    output: OutputSelector = None,
    rows_per_pass: int = 256,
) -> Confidence:
    """Score the explained class on `x` and on `x` masked by each map (one batched pass).

    Args:
        model: the classifier the maps explain.
        x: (B, C, *spatial) inputs, as the model takes them.
        maps: (B, *spatial) maps in [0, 1], or an Explanation with one target per input.
        targets: (B,) classes; default the explanation's, else the predicted class.
        fill: what a map value of 0 turns a pixel into: a scalar, a (C,) value per channel,
            or a tensor that broadcasts to x.
        base: (B, classes) scores of `x` already computed (reuses that forward pass).
        score: "softmax" (probabilities, as in the paper) or "logit".

    Examples:
        >>> import torch, camkit
        >>> from camkit.metrics import confidence
        >>> net = camkit.models.example_net(classes=3)
        >>> x = torch.rand(2, 3, 8, 8)
        >>> result = confidence(net, x, camkit.GradCAM(net)(x))
        >>> 0 <= result.average_drop <= 100, result.masked.shape
        (True, torch.Size([2]))
    """
    weights = as_maps(maps, x.shape[2:]).to(x.dtype)
    scores = ModelScores(model, score=score, output=output, rows_per_pass=rows_per_pass)
    clean = scores(x) if base is None else base.float()
    chosen = as_targets(targets, maps, x.shape[0])
    chosen = clean.argmax(dim=1) if chosen is None else chosen
    off = like_input(fill, x)
    masked_inputs = off + (x - off) * weights[:, None]
    return Confidence(base=pick(clean, chosen), masked=pick(scores(masked_inputs), chosen))


@dataclass(frozen=True)
class ADCC:
    """ADCC (Poppi et al., 2021), per input: the harmonic mean of coherency, 1 - complexity and
    1 - average drop, each in [0, 1] (higher is better).

    Attributes:
        coherency: (Pearson correlation of the map with the map of the map-masked input + 1) / 2.
        complexity: the map's mean absolute value (its L1 norm over the pixels).
        drop: max(0, Y - O) / Y, Average Drop's term.

    Examples:
        >>> import torch
        >>> r = ADCC(torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.5]), torch.tensor([0.0, 0.5]))
        >>> r.score.tolist()
        [1.0, 0.5]
    """

    coherency: Tensor
    complexity: Tensor
    drop: Tensor

    @property
    def score(self) -> Tensor:
        """(B,) ADCC; 0 where any of its three terms is 0."""
        terms = torch.stack([self.coherency, 1 - self.complexity, 1 - self.drop]).double()
        harmonic = 3 / (1 / terms.clamp_min(torch.finfo(torch.float64).tiny)).sum(dim=0)
        return torch.where((terms > 0).all(dim=0), harmonic, 0.0).float()


def adcc(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    explain: Callable[[Tensor, Tensor], Tensor],
    targets: Tensor | Sequence[int] | int | None = None,
    *,
    fill: float | Tensor = 0.0,
    base: Tensor | None = None,
    rows_per_pass: int = 256,
) -> ADCC:
    """ADCC's three terms: the confidence drop on the map-masked input (`confidence`, with
    probabilities), the map's complexity, and its coherency with `explain` (the method, as
    (inputs, targets) -> (N, *spatial) maps) run on the map-masked inputs for the same
    targets, all of them in one call. ``fill=0`` is the paper's ``x * map``.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net(classes=3)
        >>> x, method = torch.rand(2, 3, 8, 8), camkit.GradCAM(net)
        >>> explained = method(x)
        >>> r = adcc(net, x, explained, lambda i, t: method(i, t).maps[:, 0])
        >>> r.score.shape, bool(((r.score >= 0) & (r.score <= 1)).all())
        (torch.Size([2]), True)
    """
    weights = as_maps(maps, x.shape[2:]).to(x.dtype)
    scores = ModelScores(model, rows_per_pass=rows_per_pass)
    clean = scores(x) if base is None else base.float()
    chosen = as_targets(targets, maps, x.shape[0])
    chosen = clean.argmax(dim=1) if chosen is None else chosen
    off = like_input(fill, x)
    masked_inputs = off + (x - off) * weights[:, None]
    kept = pick(clean, chosen)
    drop = ((kept - pick(scores(masked_inputs), chosen)) / kept).clamp_min(0)
    again = explain(masked_inputs, chosen).flatten(1)
    coherency = (pearson(again, weights.flatten(1)).float() + 1) / 2
    return ADCC(coherency, weights.flatten(1).abs().mean(dim=1).float(), drop.float())


def win_rate(a: Confidence | Tensor, b: Confidence | Tensor) -> float:
    """Win % of method A over B: share of inputs where A's relative drop is smaller than B's.

    Compared on the signed drop (Y - O) / Y, so when both raise the score the larger rise wins;
    ties are no win for either side.

    Examples:
        >>> import torch
        >>> win_rate(torch.tensor([0.1, 0.5, 0.2, 0.3]), torch.tensor([0.2, 0.4, 0.2, 0.9]))
        50.0
    """
    drop_a = a.drop if isinstance(a, Confidence) else a
    drop_b = b.drop if isinstance(b, Confidence) else b
    if drop_a.shape != drop_b.shape:
        raise ValueError(
            f"win rate compares the same inputs: drops of shape {tuple(drop_a.shape)} and "
            f"{tuple(drop_b.shape)}"
        )
    return float((drop_a < drop_b.to(drop_a.device)).float().mean() * 100)
