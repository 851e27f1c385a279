"""Deprecated: the metric plug-ins are `camkit.evaluation` now (`Metric`, `register_metric`,
`METRICS`). These names keep working until the next release, with a `DeprecationWarning`."""

from __future__ import annotations

import warnings
from typing import Any

from camkit import evaluation

_RENAMED = {
    "Measure": "Metric",
    "MEASURES": "METRICS",
    "register_measure": "register_metric",
    "unregister_measure": "unregister_metric",
    "Context": "Context",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - the moved names are of many kinds
    if name not in _RENAMED:
        raise AttributeError(f"module 'camkit.measures' has no attribute {name!r}")
    new = _RENAMED[name]
    warnings.warn(
        f"camkit.measures.{name} is now camkit.evaluation.{new}; the old name goes in the next "
        "release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(evaluation, new)
