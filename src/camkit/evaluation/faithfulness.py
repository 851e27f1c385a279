"""Faithfulness metrics of the Quantus catalogue, as plug-ins (the mathematics:
`camkit.metrics.faithfulness`; deletion, insertion, Average Drop and ROAD are in `builtin`)."""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import override

from camkit.evaluation.plugins import (
    Context,
    Load,
    PerImage,
    Setting,
    register_metric,
)
from camkit.evaluation.settings import Settings
from camkit.metrics.confidence import adcc
from camkit.metrics.faithfulness import faithfulness_correlation


@register_metric("faithfulness-correlation")
class FaithfulnessCorrelation(PerImage):
    """Faithfulness correlation (Bhatt et al., 2020): over `fc_runs` random subsets of
    `fc_subset` pixels, the Pearson correlation between the map's sum over a subset and the
    drop of the class's logit when the subset takes the fill value. Every method is measured on
    the same subsets of an image (paired). Quantus' `FaithfulnessCorrelation` with pixels as
    its features; not in the default run (`fc_runs` passes an input)."""

    category = "faithfulness"
    default = False
    columns = (("Faith. corr.", "higher", "{:.3f}"),)
    settings = (
        Setting("fc_runs", int, 100, "faithfulness correlation: random subsets per image (each a "
                "pass)", low=2, high=10_000),
        Setting("fc_subset", int, 224, "faithfulness correlation: pixels per subset (as Quantus)",
                low=1, high=2**31 - 1),
    )  # fmt: skip

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.fc_runs)

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        maps = context.explanation.maps[:, 0]
        subset = min(s.fc_subset, maps[0].numel())
        return faithfulness_correlation(
            context.model, context.x, maps, context.labels, runs=s.fc_runs, subset=subset,
            fill=s.fill, generator=context.generator(), rows_per_pass=s.rows_per_pass,
        )  # fmt: skip


@register_metric("adcc")
class AverageDropCoherencyComplexity(PerImage):
    """ADCC (Poppi et al., 2021): the harmonic mean of coherency (the map against the method's
    map of the map-masked input), 1 - complexity (the map's mean) and 1 - average drop, each
    image's, in %; with its coherency and complexity. The masked input is ``x * map`` (the
    paper's; the fill value is not used). One more explanation and one pass an input."""

    category = "faithfulness"
    needs = ("re-explanations",)
    columns = (("ADCC %", "higher", "{:.1f}"), ("Coherency %", "higher", "{:.1f}"),
               ("L1 complexity %", "lower", "{:.1f}"))  # fmt: skip
    scale = 100.0

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return 1.0 + load.explain

    @override
    def measure(self, context: Context) -> Tensor:
        result = adcc(context.model, context.x, context.explanation.maps[:, 0],
                      context.explain_again(), context.labels, base=context.clean,
                      rows_per_pass=context.settings.rows_per_pass)  # fmt: skip
        return torch.stack([result.score, result.coherency, result.complexity], dim=1)
