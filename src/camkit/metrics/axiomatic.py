"""Does the map keep the axioms an attribution should? Each is a property a map either has or
lacks, measured as a number so that methods can be told apart:

- completeness (Sundararajan et al., 2017): the map sums to the logit's drop from a baseline
  input, ``f(x) - f(x0)``; the figure is the relative gap ``|sum(a) - drop| / |drop|``;
- non-sensitivity (Nguyen & Martinez, 2020): a region the map gives nothing changes nothing
  when it is filled, and a region the map credits changes the class probability; the figure
  is the share of `patch`-pixel squares that break either rule;
- input invariance (Kindermans et al., 2017): a model whose first layer absorbs a constant
  shift of its input computes the same function on the shifted input; the map should not
  change. The figure is 1 where the two maps agree within a tolerance.

Batched on the inputs' device.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from camkit.metrics._common import Maps, ModelScores, as_maps, as_targets, like_input, pick
from camkit.metrics.stepwise import patch_ranks, step_scores


@dataclass(frozen=True)
class Completeness:
    """Each input's map sum and the target logit's drop from the baseline, (B,) each.

    Examples:
        >>> Completeness(torch.tensor([2.0, 3.0]), torch.tensor([2.0, 4.0])).gap.tolist()
        [0.0, 0.25]
    """

    sums: Tensor
    drops: Tensor

    @property
    def gap(self) -> Tensor:
        """(B,) ``|sum - drop| / |drop|`` (the absolute gap where the drop is 0)."""
        difference = (self.sums - self.drops).abs()
        return torch.where(self.drops != 0, difference / self.drops.abs(), difference)


def completeness(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    fill: float | Tensor = 0.0,
    rows_per_pass: int = 256,
) -> Completeness:
    """The map's sum against the drop of the target's logit when the whole input takes `fill`
    (a number, (C,) per channel, or (B, C or 1, 1, ...) per input). One pass.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x = torch.rand(1, 1, 2, 2)
        >>> exact = (net[1].weight[0].detach() * x.flatten()).view(1, 2, 2)  # w * x
        >>> float(completeness(net, x, exact, 0).gap) < 1e-5
        True
    """
    values = as_maps(maps, x.shape[2:]).float()
    classes = as_targets(targets, maps, len(x))
    if classes is None:
        raise ValueError("completeness needs the targets (or an Explanation of them)")
    fill_ = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    baseline = (like_input(fill_, x) if fill_.dim() <= 1 else fill_).expand_as(x)
    scores = ModelScores(model, score="logit", rows_per_pass=rows_per_pass)
    logits = scores(torch.cat([x, baseline]))
    drops = pick(logits[: len(x)], classes) - pick(logits[len(x) :], classes)
    return Completeness(values.flatten(1).double().sum(dim=1), drops.double())


def non_sensitivity(
    model: nn.Module,
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    patch: int = 1,
    fill: float | Tensor = 0.0,
    eps: float = 1e-5,
    rows_per_pass: int = 256,
) -> Tensor:
    """(B,) how many of the `patch`-pixel squares (each filled alone with `fill`, one pass
    each) break non-sensitivity: the map is below `eps` on the whole square but the target's
    probability moves by `eps` or more, or the map credits it and the probability does not
    move. `patch` 1: pixels, Quantus' `NonSensitivity` (it counts the same violations).

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
        >>> x = torch.ones(1, 1, 2, 2)
        >>> right = torch.tensor([[[1.0, 0], [0, 0]]])  # only the pixel the model reads
        >>> non_sensitivity(net, x, right, 0).tolist()
        [0.0]
        >>> non_sensitivity(net, x, 1 - right, 0).tolist()  # credits the three it ignores
        [4.0]
    """
    values = as_maps(maps, x.shape[2:]).float()
    classes = as_targets(targets, maps, len(x))
    if classes is None:
        raise ValueError("non_sensitivity needs the targets (or an Explanation of them)")
    scores = ModelScores(model, score="softmax", rows_per_pass=rows_per_pass)
    if patch == 1:
        squares = torch.arange(values[0].numel(), device=x.device).expand(len(x), -1)
    else:  # the squares in raster order, whatever the map says
        squares = patch_ranks(torch.zeros_like(values), patch, seed=None)
    count = int(squares.max()) + 1
    starts = torch.arange(count, device=x.device)
    bounds = torch.stack([starts, starts + 1], dim=1)
    clean = pick(scores(x), classes)
    filled = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    moved = (step_scores(scores, x, squares, bounds, classes, filled) - clean[:, None]).abs() >= eps
    credit = torch.zeros(len(x), count, device=x.device).scatter_reduce(
        1, squares, values.flatten(1), reduce="amax", include_self=False
    )
    return (moved ^ (credit >= eps)).sum(dim=1).float()


def shifted_model(model: nn.Module, shift: float) -> nn.Module:
    """A copy of `model` that takes its inputs shifted by `shift`: it gives on ``x + shift``
    exactly what `model` gives on x, as a first layer that absorbs the shift would (a
    convolution's zero padding and a normalisation inside `forward` included, which moving a
    bias would not). Its layers keep their names.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU())
        >>> x = torch.rand(1, 1, 4, 4)
        >>> bool(torch.allclose(shifted_model(net, -1.0)(x - 1), net(x), atol=1e-6))
        True
    """
    moved = copy.deepcopy(model)

    def unshift(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0] - shift, *args[1:])

    moved.register_forward_pre_hook(unshift)
    return moved


def input_invariance(
    explain: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    maps: Maps,
    targets: Tensor | None = None,
    *,
    shift: float = -1.0,
    atol: float = 1e-4,
) -> Tensor:
    """(B,) 1.0 where `explain` (the method on `shifted_model(model, shift)`) maps ``x +
    shift`` within `atol` of `maps` everywhere, else 0.0. Quantus' `InputInvariance`
    (shift -1, tolerance 1e-4).

    Examples:
        >>> import torch
        >>> same = lambda inputs, targets: inputs[:, 0] * 0 + 1  # a map that ignores the input
        >>> input_invariance(same, torch.rand(2, 1, 3, 3), torch.ones(2, 3, 3), 0).tolist()
        [1.0, 1.0]
    """
    values = as_maps(maps, x.shape[2:]).float()
    classes = as_targets(targets, maps, len(x))
    if classes is None:
        raise ValueError("input_invariance needs the targets (or an Explanation of them)")
    again = explain(x + shift, classes).float()
    return ((again - values).abs() <= atol).flatten(1).all(dim=1).float()
