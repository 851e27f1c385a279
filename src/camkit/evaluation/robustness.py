"""Robustness metrics of the Quantus catalogue, as plug-ins (the mathematics:
`camkit.metrics.robustness`): the method explains perturbed copies of each input again."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from typing_extensions import override

from camkit.errors import CamkitWarning
from camkit.evaluation.plugins import (
    Context,
    Load,
    Metric,
    Setting,
    Statistic,
    cat,
    mean_of,
    register_metric,
)
from camkit.evaluation.settings import Settings
from camkit.methods import method_class
from camkit.metrics.robustness import sensitivity
from camkit.seeds import batch_seed

COLUMNS = ("Max-sens.", "Avg-sens.")


@register_metric("sensitivity")
class Sensitivity(Metric):
    """Max-sensitivity and average sensitivity (Yeh et al., 2019): the largest and the mean
    relative change of the map, ``||a' - a|| / ||a||``, over `sensitivity_samples` copies of
    the input with uniform noise in [-`sensitivity_radius`, `sensitivity_radius`], each
    explained again by the method with its options and layers. Every method of an image sees
    the same noise. Quantus' `MaxSensitivity` and `AvgSensitivity` (which draw 200 samples);
    named only: each sample costs an explanation of every input."""

    category = "robustness"
    default = False
    columns = tuple((name, "lower", "{:.3f}") for name in COLUMNS)
    settings = (
        Setting("sensitivity_samples", int, 10, "max/avg sensitivity: noisy copies of each input "
                "explained again (Quantus: 200)", low=1, high=1000),
        Setting("sensitivity_radius", float, 0.2, "max/avg sensitivity: the noise's bound, in the "
                "model's input space", low=0.0),
    )  # fmt: skip

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return settings.sensitivity_samples * load.explain

    @override
    def measure(self, context: Context) -> Tensor:
        s, e = context.settings, context.explanation
        explainer = method_class(context.method)(context.model, list(e.layers) or context.layer,
                                                 **context.options)  # fmt: skip

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            with warnings.catch_warnings():  # a constant map here is a change the figure counts
                warnings.simplefilter("ignore", CamkitWarning)
                return explainer(inputs, targets).maps[:, 0]

        drawn = torch.Generator(device=context.x.device)
        drawn.manual_seed(batch_seed(s.seed, context.position))  # the same for every method
        result = sensitivity(explain, context.x, e.maps[:, 0], context.labels,
                             samples=s.sensitivity_samples, radius=s.sensitivity_radius,
                             generator=drawn, rows_per_call=s.rows_per_pass)  # fmt: skip
        return torch.stack([result.maximum, result.average], dim=1)

    @override
    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        joined = cat(self.done())
        return {name: float(joined[:, i].mean()) for i, name in enumerate(COLUMNS)}

    @override
    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        joined = cat(self.done())
        return {name: mean_of(joined[:, i]) for i, name in enumerate(COLUMNS)}
