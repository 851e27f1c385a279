"""Randomisation metrics of the Quantus catalogue beside the sanity check (`builtin`), as
plug-ins: does the map change when the question changes?"""

from __future__ import annotations

from torch import Tensor
from typing_extensions import override

from camkit.evaluation.plugins import Context, Load, PerImage, register_metric
from camkit.evaluation.settings import Settings
from camkit.metrics.sanity import other_classes, random_logit


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
        return random_logit(context.explain_again(), context.explanation.maps[:, 0], context.x,
                            context.labels, others)  # fmt: skip
