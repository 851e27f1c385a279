"""The axiomatic metrics of the Quantus catalogue, as plug-ins (the mathematics:
`camkit.metrics.axiomatic`): properties an attribution should have, each measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from typing_extensions import override

from camkit.evaluation.faithfulness import PATCH, _Squares
from camkit.evaluation.plugins import Context, Load, PerImage, Setting, Settings, register_metric
from camkit.metrics import axiomatic


class _Axiom(PerImage):
    category = "axiomatic"
    default = False


@register_metric("completeness")
class Completeness(_Axiom):
    """Completeness (Sundararajan et al., 2017): the relative gap between the map's sum and
    the drop of the class's logit when the whole input takes the fill value. CAM maps are
    scaled to [0, 1], so few are complete; the figure says by how much. One pass. Quantus'
    `Completeness` tests float equality (always false) and fills one channel of a colour
    input (docs/concepts.md)."""

    columns = (("Completeness gap", "lower", "{:.3g}"),)

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return 1.0

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        return axiomatic.completeness(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            fill=s.fill,
            rows_per_pass=s.rows_per_pass,
        ).gap


@register_metric("non-sensitivity")
class NonSensitivity(_Axiom):
    """Non-sensitivity (Nguyen & Martinez, 2020): the share of `patch`-pixel squares, each
    filled alone with the fill value (a pass each), where the map and the model disagree: the
    map gives the square nothing (below `ns_eps`) but the class probability moves by `ns_eps`
    or more, or the other way round. Quantus' `NonSensitivity` on pixels (patch 1)."""

    columns = (("Non-sensitivity %", "lower", "{:.1f}"),)
    scale = 100.0
    settings = (
        PATCH,
        Setting(
            "ns_eps",
            float,
            1e-5,
            "non-sensitivity: what counts as nothing, of the map and of the probability's change",
            low=0.0,
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(_Squares.squares(settings, load.size or (96, 96)))

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        squares = _Squares.squares(s, context.x.shape[2:])
        broken = axiomatic.non_sensitivity(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            patch=s.patch,
            fill=s.fill,
            eps=s.ns_eps,
            rows_per_pass=s.rows_per_pass,
        )
        return broken / squares


@register_metric("input-invariance")
class InputInvariance(_Axiom):
    """Input invariance (Kindermans et al., 2017): the share of images whose map stays within
    1e-4 everywhere when the input is shifted by `invariance_shift` and the model takes the
    shift back before its first layer (the same function). One more explanation an input.
    Quantus' `InputInvariance` (which leaves each input's first value unshifted)."""

    needs = ("re-explanations",)
    columns = (("Input invariant %", "higher", "{:.1f}"),)
    scale = 100.0
    settings = (
        Setting(
            "invariance_shift",
            float,
            -1.0,
            "input invariance: the constant added to every input value",
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return load.explain

    @override
    def measure(self, context: Context) -> Tensor:
        shift = context.settings.invariance_shift
        moved = axiomatic.shifted_model(context.model, shift)
        return axiomatic.input_invariance(
            context.explain_again(moved),
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            shift=shift,
        )

    @override
    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        return {"invariance_shift": settings.invariance_shift}
