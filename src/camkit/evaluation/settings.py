"""The protocol parameters of an evaluation: those every metric shares, and those each metric
plug-in declares (`Metric.settings`), checked against their ranges when given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from camkit.evaluation.plugins import Setting, metric_settings

SHARED = (
    Setting("seed", int, 0, "seeds ROAD's noise and the randomisation check"),
    Setting("resamples", int, 1000, "bootstrap resamples (0: none)", low=0, flag=False),
    Setting("rows_per_pass", int, 256, "perturbed inputs per forward pass", low=1, flag=False),
)
"""The settings every metric shares. The fill value is one too (see `Settings`)."""


class Settings:
    """Protocol parameters; the defaults follow the papers, scaled to the input size.

    fill: the value deleted pixels and Average Drop's masked-out pixels take, in the model's
    input space (a number, or a (C,) tensor per channel). The other keywords are the shared
    settings (`SHARED`: seed, resamples, rows_per_pass) and those of the registered metrics
    (`camkit.evaluation.metric_settings()`: steps, percentages, tolerance, thresholds,
    sanity_images); a name that is neither is a `TypeError`, a value out of range a `ValueError`.

    Examples:
        >>> Settings().steps, Settings(tolerance=6.0).pointing_tolerance((96, 96))
        (16, 6.0)
        >>> Settings(steps=0)
        Traceback (most recent call last):
        ...
        ValueError: steps 0: must be at least 1 (deletion/insertion steps)
    """

    def __init__(self, *, fill: float | Tensor = 0.0, **values: object) -> None:
        known = {s.name: s for s in SHARED} | metric_settings()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise TypeError(
                f"unknown setting(s) {', '.join(unknown)}; valid: fill, {', '.join(known)}"
            )
        self.fill = fill
        self._values: dict[str, Any] = {n: values.get(n, s.default) for n, s in known.items()}
        for name, value in self._values.items():
            known[name].check(value)
        for name, value in self._values.items():
            if callable(value):  # a default made per instance (a tensor of its own)
                self._values[name] = value()

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - any registered metric's setting
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"no setting {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Settings({shown})"

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, the fill value first."""
        return {"fill": self.fill, **self._values}

    def pointing_tolerance(self, size: Sequence[int]) -> float:
        """The pointing game's tolerance in pixels: the `tolerance` setting, or 15 px at 224
        scaled to the input's shorter side."""
        tolerance = self._values.get("tolerance")
        return float(tolerance) if tolerance is not None else 15.0 * min(size) / 224
