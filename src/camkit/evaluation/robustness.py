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
from camkit.metrics.robustness import Sensitivity, relative_stability, sensitivity


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


@register_metric("relative-stability")
class RelativeStability(_Perturbed):
    """Relative input and output stability (Agarwal et al., 2022): the largest relative change
    of the map, ``||(a - a') / a||`` (a zero of the map counts as 1e-6), over the input's
    relative change or over the change of the logits, across `stability_samples` copies with
    uniform noise in [-`stability_radius`, `stability_radius`]; each sample also costs a
    pass for the logits. Quantus' `RelativeInputStability` and `RelativeOutputStability`
    (200 samples, noise in [0.02, 0.2])."""

    columns = (("Rel. input stab.", "lower", "{:.3g}"), ("Rel. output stab.", "lower", "{:.3g}"))
    samples = "stability_samples"
    settings = (
        Setting("stability_samples", int, 10, "relative stability: noisy copies of each input "
                "explained again (Quantus: 200)", low=1, high=1000),
        Setting("stability_radius", float, 0.2, "relative stability: the noise's bound, in the "
                "model's input space", low=0.0),
    )  # fmt: skip

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.stability_samples) * (load.explain + 1)

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        result = relative_stability(context.explain_again(), context.model, context.x,
                                    context.explanation.maps[:, 0], context.labels,
                                    samples=s.stability_samples, radius=s.stability_radius,
                                    generator=context.generator(),
                                    rows_per_call=s.rows_per_pass)  # fmt: skip
        return torch.stack([result.input, result.output], dim=1)
