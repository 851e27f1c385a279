"""95% intervals of every figure over images, and which methods differ, by the bootstrap."""

from __future__ import annotations

import torch
from torch import Tensor

from camkit.evaluation.plugins import Metric
from camkit.seeds import generator

Intervals = dict[str, dict[str, list[float]]]
"""method -> column -> [low, high]."""
Differences = dict[str, dict[str, dict[str, bool]]]
"""column -> method a -> method b -> whether a and b differ."""

LEVEL = 0.95


def bootstrap(
    plugins: dict[str, dict[str, Metric]], resamples: int, seed: int
) -> tuple[Intervals, Differences]:
    """95% percentile intervals of every figure over images, and paired differences.

    Every method is resampled with the same image indices (one draw per image count, seeded),
    so a difference between two methods is measured on the same images: the pair differs when
    the interval of the difference excludes 0.
    """
    if resamples < 1:
        return {}, {}
    draws = generator(seed)
    drawn: dict[int, Tensor] = {}
    samples: dict[str, dict[str, Tensor]] = {}  # column -> method -> (R,) resampled figures
    intervals: Intervals = {}
    for method, named in plugins.items():
        for plugin in named.values():
            for column, (count, figure) in plugin.statistics().items():
                if count not in drawn:
                    drawn[count] = torch.randint(count, (resamples, count), generator=draws)
                values = figure(drawn[count]).double()
                samples.setdefault(column, {})[method] = values
                intervals.setdefault(method, {})[column] = _interval(values)
    return intervals, _differences(samples)


def _interval(values: Tensor) -> list[float]:
    tail = (1 - LEVEL) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail]).double())
    return [float(low), float(high)]


def _differences(samples: dict[str, dict[str, Tensor]]) -> Differences:
    differ: Differences = {}
    for column, by_method in samples.items():
        table = differ.setdefault(column, {})
        for a, first in by_method.items():
            for b, second in by_method.items():
                if len(first) != len(second) or a == b:
                    table.setdefault(a, {})[b] = False
                    continue
                low, high = _interval(first - second)
                table.setdefault(a, {})[b] = bool(low > 0 or high < 0)
    return differ
