"""Robustness metrics of the Quantus catalogue, as plug-ins (the mathematics:
`camkit.metrics.robustness`): the method explains perturbed copies of each input again."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from camkit.evaluation.faithfulness import PATCH
from camkit.evaluation.plugins import (
    Context,
    Load,
    PerImage,
    Setting,
    Settings,
    register_metric,
)
from camkit.metrics.robustness import (
    Sensitivity,
    consistency,
    continuity,
    relative_stability,
    sensitivity,
)


def _noise(prefix: str, label: str) -> tuple[Setting, Setting]:
    """`prefix`_samples (10; Quantus draws 200) and `prefix`_radius (0.2) of uniform noise."""
    return (
        Setting(
            f"{prefix}_samples",
            int,
            10,
            f"{label}: noisy copies of each input explained again (Quantus: 200)",
            low=1,
            high=1000,
        ),
        Setting(
            f"{prefix}_radius",
            float,
            0.2,
            f"{label}: the noise's bound, in the model's input space",
            low=0.0,
        ),
    )


class _Perturbed(PerImage):
    """A metric of the maps of noisy copies of each input, explained again by the method; every
    method of an image sees the same noise. Named only: each sample costs an explanation of
    every input."""

    category = "robustness"
    default = False
    needs = ("re-explanations",)
    samples: ClassVar[str] = ""  # the setting that counts the noisy copies

    def noisy(self, context: Context, radius: float = 0.0, std: float | None = None) -> Sensitivity:
        return sensitivity(
            context.explain_again(),
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            samples=getattr(context.settings, self.samples),
            radius=radius,
            std=std,
            generator=context.generator(),
            rows_per_call=context.settings.rows_per_pass,
        )

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
    settings = _noise("sensitivity", "max/avg sensitivity")

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
        Setting(
            "lipschitz_samples",
            int,
            10,
            "local Lipschitz estimate: noisy copies of each input explained again (Quantus: 200)",
            low=1,
            high=1000,
        ),
        Setting(
            "lipschitz_std",
            float,
            0.1,
            "local Lipschitz estimate: the Gaussian noise's "
            "standard deviation, in the model's input space",
            low=0.0,
        ),
    )

    @override
    def measure(self, context: Context) -> Tensor:
        return self.noisy(context, std=context.settings.lipschitz_std).lipschitz


@register_metric("relative-stability")
class RelativeStability(_Perturbed):
    """Relative input, output and representation stability (Agarwal et al., 2022): the
    largest relative change of the map, ``||(a - a') / a||`` (a zero of the map counts as
    1e-6), over the input's relative change, the change of the logits, or the relative change
    of the explained layer's output, across `stability_samples` copies with uniform noise in
    [-`stability_radius`, `stability_radius`]; each sample also costs a pass. Quantus'
    `RelativeInputStability`, `RelativeOutputStability` and
    `RelativeRepresentationStability` (200 samples, noise in [0.02, 0.2], every layer). A
    method that explains no layer of the model (Sobel) has no representation column."""

    columns = (
        ("Rel. input stab.", "lower", "{:.3g}"),
        ("Rel. output stab.", "lower", "{:.3g}"),
        ("Rel. repr. stab.", "lower", "{:.3g}"),
    )
    samples = "stability_samples"
    settings = _noise("stability", "relative stability")

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.stability_samples) * (load.explain + 1)

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        modules = dict(context.model.named_modules())
        layers = [name for name in context.explanation.layers if name in modules]
        result = relative_stability(
            context.explain_again(),
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            samples=s.stability_samples,
            radius=s.stability_radius,
            layers=layers,
            generator=context.generator(),
            rows_per_call=s.rows_per_pass,
        )
        # a method that explains no layer of the model has no representation to compare
        nothing = torch.full_like(result.input, torch.nan)
        representation = nothing if result.representation is None else result.representation
        return torch.stack([result.input, result.output, representation], dim=1)


@register_metric("continuity")
class Continuity(PerImage):
    """Continuity (Montavon et al., 2018), as Quantus measures it: the largest
    ``||a' - a||_1 / ||x' - x||_2`` over `continuity_steps` horizontal translations of each
    input (the uncovered columns take the fill value), each translated input explained again.
    Lower is smoother. Quantus' `Continuity` (28 steps)."""

    category = "robustness"
    default = False
    needs = ("re-explanations",)
    columns = (("Continuity", "lower", "{:.3g}"),)
    settings = (
        Setting(
            "continuity_steps",
            int,
            28,
            "continuity: horizontal translations, each input explained again at each",
            low=1,
            high=10_000,
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.continuity_steps) * load.explain

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        steps = min(s.continuity_steps, 2 * context.x.shape[-1] + 1)
        return continuity(
            context.explain_again(),
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            steps=steps,
            fill=s.fill,
            rows_per_call=s.rows_per_pass,
        )


@register_metric("consistency")
class Consistency(PerImage):
    """Consistency (Dasgupta et al., 2022), within each batch: among the other images whose
    maps have their largest sum in the same `patch`-pixel square, the share the model
    predicts the same class as this one. It depends on the batch (`--batch-size`), as in
    Quantus' `Consistency` (whose default discretisation reads the map's first five values:
    docs/concepts.md). No pass of its own."""

    category = "robustness"
    default = False
    columns = (("Consistency %", "higher", "{:.1f}"),)
    scale = 100.0
    settings = (PATCH,)

    @override
    def measure(self, context: Context) -> Tensor:
        return consistency(
            context.explanation.maps[:, 0],
            context.clean.argmax(dim=1),
            patch=context.settings.patch,
        )
