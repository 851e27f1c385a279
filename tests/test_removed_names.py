"""The names 0.2 renamed were kept, with a warning, until 0.5.0 (as the 0.2.0 changelog said);
0.5.0 removed them. An old name is now the plain error Python gives for an unknown one."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

import camkit
from camkit import metrics
from camkit.evaluation import Settings, register_metric
from camkit.models import example_net

SOURCE = Path(camkit.__file__).parent


def test_old_keywords_are_unknown_keywords() -> None:
    model, x = example_net(), torch.rand(1, 3, 16, 16)
    explanation = camkit.CAM(model)(x)
    with pytest.raises(TypeError, match="baseline"):
        metrics.confidence(model, x, explanation, baseline=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="batch_size"):
        camkit.ScoreCAM(model, batch_size=8)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="map"):
        camkit.overlay(x[0], map=explanation.maps[0, 0])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unknown setting.*batch_size"):
        Settings(batch_size=7)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("camkit.stream", "Explained"),
        ("camkit.methods.base", "ExplainerOptions"),
        ("camkit.evaluation", "needs_regions"),
        ("camkit.cli.common", "BUNDLED"),
        ("camkit.cli.common", "load_model"),
    ],
)
def test_old_module_names_are_gone(module: str, name: str) -> None:
    assert not hasattr(importlib.import_module(module), name)


def test_old_modules_and_properties_are_gone() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("camkit.measures")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("camkit.deprecation")
    assert not hasattr(Settings(), "batch_size")
    report_fields = vars(importlib.import_module("camkit.evaluation.report").Report)
    assert "win" not in report_fields
    assert "sanity" not in report_fields


def test_a_plugin_with_the_0_1_attribute_is_not_read_as_a_mask_metric() -> None:
    from camkit.evaluation import METRICS, Metric, unregister_metric

    @register_metric("old-style")
    class OldStyle(Metric):
        needs_regions = True

    try:
        assert not METRICS["old-style"].needs_masks
    finally:
        unregister_metric("old-style")


def test_no_deprecation_shim_is_left_in_the_source() -> None:
    shims = [
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if "DeprecationWarning" in path.read_text() or "renamed_keywords" in path.read_text()
    ]
    assert shims == []
