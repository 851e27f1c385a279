"""Robustness metrics of the Quantus catalogue, as plug-ins (the mathematics:
`camkit.metrics.robustness`): the method explains perturbed copies of each input again."""

from __future__ import annotations

from typing import ClassVar

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
from camkit.metrics.robustness import Sensitivity, sensitivity


class _Perturbed(PerImage):
    """A metric of the maps of noisy copies of each input, explained again by the method; every
    method of an image sees the same noise. Named only: each sample costs an explanation of
    every input."""

    category = "robustness"
    default = False
    needs = ("re-explanations",)
    samples: ClassVar[str] = ""  # the setting that counts the noisy copies

    def noisy(self, context: Context, radius: float = 0.0, std: float | None = None) -> Sensitivity:
        return sensitivity(context.explain_again(), context.x, context.explanation.maps[:, 0],
                           context.labels, samples=getattr(context.settings, self.samples),
                           radius=radius, std=std, generator=context.generator(),
                           rows_per_call=context.settings.rows_per_pass)  # fmt: skip

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(getattr(settings, self.samples)) * load.explain


@register_metric("sensitivity")
class MaxAvgSensitivity(_Perturbed):
    """Max-sensitivity and average sensitivity (Yeh et al., 2019): the largest and the mean
    relative change of the map, ``||a' - a|| / ||a||``, over `sensitivity_samples` copies of
    the input with uniform noise in [-`sensitivity_radius`, `sensitivity_radius`]. Quantus'
    `MaxSensitivity` and `AvgSensitivity` (which draw 200 samples)."""

    columns = (("Max-sens.", "lower", "{:.3f}"), ("Avg-sens.", "lower", "{:.3f}"))
    samples = "sensitivity_samples"
    settings = (
        Setting("sensitivity_samples", int, 10, "max/avg sensitivity: noisy copies of each input "
                "explained again (Quantus: 200)", low=1, high=1000),
        Setting("sensitivity_radius", float, 0.2, "max/avg sensitivity: the noise's bound, in the "
                "model's input space", low=0.0),
    )  # fmt: skip

    @override
    def measure(self, context: Context) -> Tensor:
        result = self.noisy(context, radius=context.settings.sensitivity_radius)
        return torch.stack([result.maximum, result.average], dim=1)


@register_metric("local-lipschitz")
class LocalLipschitz(_Perturbed):
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola, 2018): the largest
    ``||a' - a|| / ||x' - x||`` over `lipschitz_samples` copies of the input with Gaussian
    noise of `lipschitz_std`. Quantus' `LocalLipschitzEstimate` (which draws 200 samples)."""

    columns = (("Local Lipschitz", "lower", "{:.4f}"),)
    samples = "lipschitz_samples"
    settings = (
        Setting("lipschitz_samples", int, 10, "local Lipschitz estimate: noisy copies of each "
                "input explained again (Quantus: 200)", low=1, high=1000),
        Setting("lipschitz_std", float, 0.1, "local Lipschitz estimate: the Gaussian noise's "
                "standard deviation, in the model's input space", low=0.0),
    )  # fmt: skip

    @override
    def measure(self, context: Context) -> Tensor:
        return self.noisy(context, std=context.settings.lipschitz_std).lipschitz
