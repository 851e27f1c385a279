"""The complexity metrics as plug-ins (the mathematics: `camkit.metrics.complexity`): how
concise a map is, whatever the model. They need no pass through the model."""

from __future__ import annotations

from torch import Tensor
from typing_extensions import override

from camkit.evaluation.plugins import Context, PerImage, Setting, register_metric
from camkit.metrics import complexity


class _Complexity(PerImage):
    category = "complexity"


@register_metric("sparseness")
class Sparseness(_Complexity):
    """Sparseness (Chalasani et al., 2020): the Gini index of the map, 0 (even) to 1 (one
    pixel). Quantus' `Sparseness` with its defaults."""

    columns = (("Sparseness", "higher", "{:.3f}"),)

    @override
    def measure(self, context: Context) -> Tensor:
        return complexity.sparseness(context.explanation.maps[:, 0])


@register_metric("complexity")
class Complexity(_Complexity):
    """Complexity (Bhatt et al., 2020): the entropy of the map as a distribution over pixels
    (natural logarithm; log(pixels) for an even map). Quantus' `Complexity`."""

    columns = (("Complexity", "lower", "{:.3f}"),)

    @override
    def measure(self, context: Context) -> Tensor:
        return complexity.complexity(context.explanation.maps[:, 0])


@register_metric("effective-complexity")
class EffectiveComplexity(_Complexity):
    """Effective complexity (Nguyen & Martinez, 2020): the share of pixels above
    `complexity_eps` of the map's largest value, in % (Quantus' `EffectiveComplexity` counts
    them: its figure over the pixels)."""

    columns = (("Eff. complexity %", "lower", "{:.1f}"),)
    settings = (
        Setting(
            "complexity_eps",
            float,
            1e-5,
            "effective complexity: a pixel counts above this share of the map's largest value",
            low=0.0,
            high=1.0,
        ),
    )
    scale = 100.0

    @override
    def measure(self, context: Context) -> Tensor:
        maps = context.explanation.maps[:, 0]
        count = complexity.effective_complexity(maps, context.settings.complexity_eps)
        return count / maps[0].numel()
