"""Old names keep working for one release, each with a DeprecationWarning that names the new."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit import metrics
from camkit.data import ShapesDataset
from camkit.evaluation import Batch, Settings, evaluate
from camkit.models import load_shapes_model


def test_renamed_keywords_warn_and_give_the_same_result() -> None:
    model = load_shapes_model()
    data = ShapesDataset(2, seed=1).stack()
    x, explanation = data["image"], camkit.CAM(model)(data["image"])
    new = metrics.confidence(model, x, explanation, fill=0.5, rows_per_pass=1)
    with pytest.warns(
        DeprecationWarning, match=r"confidence\(baseline=\) is now confidence\(fill=\)"
    ):
        old = metrics.confidence(model, x, explanation, baseline=0.5, rows_per_pass=1)
    assert torch.equal(old.masked, new.masked)
    with pytest.warns(DeprecationWarning, match="rows_per_pass"):
        camkit.ScoreCAM(model, batch_size=8)
    with pytest.warns(DeprecationWarning, match="heat="):
        camkit.overlay(x[0], map=explanation.maps[0, 0])
    batch = Batch(x, data["label"])
    with pytest.warns(DeprecationWarning, match=r"evaluate\(chosen=\) is now evaluate\(metrics=\)"):
        report = evaluate(model, [batch], ["cam"], chosen=["drop"], settings=Settings(resamples=0))
    assert "Avg drop %" in report.rows["cam"]
    with pytest.warns(DeprecationWarning, match="rows_per_pass"):
        assert Settings(batch_size=7).rows_per_pass == 7


def test_giving_the_old_and_the_new_keyword_is_an_error() -> None:
    with pytest.raises(TypeError, match="got map= and heat="):
        camkit.overlay(torch.rand(3, 4, 4), map=torch.rand(4, 4), heat=torch.rand(4, 4))


def test_moved_names_warn_and_are_the_new_objects() -> None:
    from camkit import evaluation, measures, stream
    from camkit.methods import base

    with pytest.warns(DeprecationWarning, match="camkit.evaluation.Metric"):
        assert measures.Measure is evaluation.Metric
    with pytest.warns(DeprecationWarning, match="register_metric"):
        assert measures.register_measure is evaluation.register_metric
    with pytest.warns(DeprecationWarning, match="ExplainedBatch"):
        assert stream.Explained is stream.ExplainedBatch
    with pytest.warns(DeprecationWarning, match="MethodOptions"):
        assert base.ExplainerOptions is base.MethodOptions
    with pytest.raises(AttributeError):
        _ = measures.NoSuchName  # type: ignore[attr-defined]


def test_a_plugin_of_0_1_with_needs_regions_still_registers_as_a_mask_metric() -> None:
    from camkit.evaluation import METRICS, Metric, register_metric, unregister_metric

    with pytest.warns(DeprecationWarning, match="needs_regions is now needs_masks"):

        @register_metric("old-style")
        class OldStyle(Metric):
            needs_regions = True

    try:
        assert METRICS["old-style"].needs_masks
    finally:
        unregister_metric("old-style")
    from camkit import evaluation
    from camkit.cli import common

    with pytest.warns(DeprecationWarning, match="needing_masks"):
        assert "pointing" in evaluation.needs_regions()
    with pytest.warns(DeprecationWarning, match="DEFAULT_MODEL"):
        assert common.BUNDLED == "shapes"
