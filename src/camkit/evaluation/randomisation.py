"""Randomisation metrics of the Quantus catalogue beside the sanity check (`builtin`), as
plug-ins: does the map change when the question changes?"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from typing_extensions import override

from camkit.evaluation.builtin import SanityCheck
from camkit.evaluation.plugins import (
    Context,
    Load,
    PerImage,
    Plot,
    Setting,
    Settings,
    register_metric,
)
from camkit.metrics.sanity import efficient_mprt, other_classes, random_logit


@register_metric("random-logit")
class RandomLogit(PerImage):
    """Random logit test (Sixt et al., 2020): the SSIM of each image's map of its class with
    its map of a random other class (the same class for every method), explained by the
    method with its options and layers. Lower: the map follows the class. Quantus'
    `RandomLogit`, with camkit's 2-D SSIM where Quantus measures SSIM along the flattened map
    (docs/concepts.md)."""

    category = "randomisation"
    needs = ("re-explanations", "another class")
    columns = (("Random logit SSIM", "lower", "{:.3f}"),)

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return load.explain  # one more explanation of every input

    @override
    def measure(self, context: Context) -> Tensor:
        others = other_classes(context.labels, context.clean.shape[1], context.generator())
        return random_logit(
            context.explain_again(),
            context.explanation.maps[:, 0],
            context.x,
            context.labels,
            others,
        )


def _plots(key: str, title: str) -> tuple[Plot, ...]:
    return tuple(
        Plot(
            f"{key}_{measure}",
            f"{key}_{measure}",
            f"{title}: {label} with the original map (1 = unchanged)",
            "layers randomised, from the output down",
            label,
            lambda _info, n: list(range(1, n + 1)),
        )
        for measure, label in (("spearman", "Spearman rank correlation"), ("ssim", "SSIM"))
    )


@register_metric("mprt-independent")
class IndependentMPRT(SanityCheck):
    """Independent model parameter randomisation (Adebayo et al., 2018): as the sanity check
    (cascading MPRT), but each block is randomised alone, the others trained. On the same
    images as the sanity check. Quantus' `MPRT(layer_order="independent")` (which takes
    single layers, from the input up)."""

    default = False
    columns = (("MPRT-ind. rho", "lower", "{:.3f}"), ("MPRT-ind. SSIM", "lower", "{:.3f}"))
    settings = ()  # the sanity check's images
    plots = _plots("mprt_independent", "Independent MPRT")

    @override
    def protocol(self, settings: Settings) -> dict[str, Any]:
        return {"independent": True}


@register_metric("smooth-mprt")
class SmoothMPRT(SanityCheck):
    """Smooth MPRT (Hedström et al., 2024): the cascading sanity check with every map, the
    original's too, the mean over `smprt_samples` copies of the input (the last clean, the
    others with Gaussian noise of 0.1 times its range), which takes out the noise that moves
    a map whatever the model. `smprt_samples` explanations per image and step."""

    default = False
    columns = (("sMPRT rho", "lower", "{:.3f}"), ("sMPRT SSIM", "lower", "{:.3f}"))
    settings = (
        Setting(
            "smprt_samples",
            int,
            10,
            "smooth MPRT: noisy copies averaged into each map (Quantus: 50)",
            low=2,
            high=1000,
        ),
    )
    plots = _plots("smooth_mprt", "Smooth MPRT")

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        # the smoothed original too, once: (steps + 1) smoothed explanations
        steps = super().passes(settings, load) * settings.smprt_samples
        return float(steps * (load.steps + 1) / max(1, load.steps))

    @override
    def protocol(self, settings: Settings) -> dict[str, Any]:
        return {"noisy_copies": settings.smprt_samples}


@register_metric("efficient-mprt")
class EfficientMPRT(PerImage):
    """Efficient MPRT (Hedström et al., 2024): the relative rise of the map's discrete entropy
    (100 bins) once every layer is randomised, ``(H(a') - H(a)) / H(a)``. Higher: the map of a
    random model is noise. One explanation by a randomised copy of the model an input.
    Quantus' `EfficientMPRT`."""

    category = "randomisation"
    default = False
    needs = ("re-explanations", "a randomised model")
    columns = (("eMPRT", "higher", "{:.3f}"),)

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return load.explain

    @override
    def measure(self, context: Context) -> Tensor:
        return efficient_mprt(
            context.model,
            context.x,
            context.method,
            original=context.explanation,
            seed=context.settings.seed,
            **context.options,
        )
