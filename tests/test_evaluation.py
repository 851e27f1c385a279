"""The evaluation loop: its figures equal the metrics called directly, whatever the batches."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

import camkit
from camkit import metrics
from camkit.data import ShapesDataset
from camkit.evaluation import Batch, Report, Settings, evaluate
from camkit.models import load_shapes_model


@pytest.fixture(scope="module")
def shapes() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    return load_shapes_model(), ShapesDataset(6, size=64, seed=11).stack()


def _batches(data: dict[str, torch.Tensor], size: int, masks: bool = True) -> list[Batch]:
    return [
        Batch(data["image"][i : i + size], data["label"][i : i + size],
              data["mask"][i : i + size] if masks else None)
        for i in range(0, data["image"].shape[0], size)
    ]  # fmt: skip


def test_figures_equal_the_metrics_called_directly(shapes) -> None:
    model, data = shapes
    settings = Settings(steps=4, fill=0.5, percentages=(20, 80), sanity_images=2, tolerance=4.0)
    report = evaluate(model, _batches(data, 6), ["gradcam"], settings=settings)
    row = report.rows["gradcam"]
    x, labels = data["image"], data["label"]
    explanation = camkit.GradCAM(model)(x, labels)
    drop = metrics.confidence(model, x, explanation, baseline=0.5)
    assert row["Avg drop %"] == pytest.approx(drop.average_drop, rel=1e-5)
    assert row["Increase %"] == pytest.approx(drop.increase_in_confidence)
    deletion = metrics.deletion(model, x, explanation, steps=4, fill=0.5)
    assert row["Deletion AUC"] == pytest.approx(deletion.mean_auc, rel=1e-5)
    assert report.curves["gradcam"]["deletion"] == pytest.approx(deletion.scores.mean(0).tolist())
    insertion = metrics.insertion(model, x, explanation, steps=4)
    assert row["Insertion AUC"] == pytest.approx(insertion.mean_auc, rel=1e-5)
    morf = metrics.road(model, x, explanation, percentages=(20, 80))
    assert row["ROAD MoRF acc"] == pytest.approx(morf.mean_accuracy)
    pointing = metrics.pointing_game(explanation, data["mask"], tolerance=4.0)
    assert row["Pointing %"] == pytest.approx(100 * pointing.accuracy)
    energy = metrics.energy_pointing_game(explanation, data["box"])
    assert row["Energy %"] == pytest.approx(100 * float(energy.mean()), rel=1e-5)
    boxes = metrics.box_accuracy(explanation, data["box"], settings.thresholds)
    assert row["MaxBoxAcc %"] == pytest.approx(100 * boxes.max_box_accuracy)
    sanity = metrics.cascading_randomisation(model, x[:2], "gradcam", labels[:2])
    assert row["Sanity rho"] == pytest.approx(float(sanity.mean_spearman.mean()), abs=1e-6)
    assert report.sanity["gradcam"]["steps"] == sanity.steps


def test_batch_splits_do_not_change_the_figures(shapes) -> None:
    model, data = shapes
    settings = Settings(steps=4, fill=0.5, sanity_images=3)
    chosen = ["drop", "deletion", "insertion", "pointing", "energy", "boxacc", "sanity"]
    whole = evaluate(model, _batches(data, 6), ["gradcam++"], chosen, settings=settings)
    split = evaluate(model, _batches(data, 2), ["gradcam++"], chosen, settings=settings)
    for column, value in whole.rows["gradcam++"].items():
        if column != "Explain s":
            assert split.rows["gradcam++"][column] == pytest.approx(value, rel=1e-5), column


def test_cam_and_grad_cam_agree_on_a_gap_network_and_win_is_pairwise(shapes) -> None:
    model, data = shapes
    settings = Settings(steps=4, fill=0.5)
    report = evaluate(model, _batches(data, 3), ["cam", "gradcam"], ["drop", "deletion"],
                      settings=settings)  # fmt: skip
    for column in ("Avg drop %", "Deletion AUC"):
        assert report.rows["cam"][column] == pytest.approx(report.rows["gradcam"][column], rel=1e-4)
    assert report.win["cam"]["gradcam"] + report.win["gradcam"]["cam"] <= 100.0
    assert set(report.win) == {"cam", "gradcam"}


def test_localisation_needs_masks(shapes) -> None:
    model, data = shapes
    report = evaluate(model, _batches(data, 6, masks=False), ["gradcam"], ["drop", "pointing"],
                      settings=Settings(fill=0.5))  # fmt: skip
    assert "Pointing %" not in report.rows["gradcam"]
    assert "Avg drop %" in report.rows["gradcam"]


def test_unknown_names_are_refused(shapes) -> None:
    model, data = shapes
    with pytest.raises(ValueError, match=r"unknown method or metric 'gradcam\+'"):
        evaluate(model, _batches(data, 6), ["gradcam+"])
    with pytest.raises(ValueError, match="unknown method or metric 'aopc'"):
        evaluate(model, _batches(data, 6), ["gradcam"], ["aopc"])


def test_report_writes_markdown_csv_and_json() -> None:
    report = Report(
        rows={"a": {"Avg drop %": 12.345, "Pointing %": 50.0}, "b": {"Avg drop %": 3.0}},
        curves={},
        sanity={},
        win={"a": {"a": 0.0, "b": 25.0}, "b": {"a": 75.0, "b": 0.0}},
        info={"images": 4},
    )
    lines = report.to_markdown().splitlines()
    assert lines[0] == "| Method | Avg drop % ↓ | Pointing % ↑ |"
    assert lines[2] == "| a | 12.35 | 50.0 |"
    assert lines[3] == "| b | 3.00 | - |"
    assert "| b | 75.0 |  |" in lines
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert rows == [["method", "Avg drop %", "Pointing %"], ["a", "12.345", "50"], ["b", "3", ""]]
    assert json.loads(report.to_json())["win"]["b"]["a"] == 75.0


def test_the_readme_metrics_example_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    example = next(b for b in blocks if "from camkit import metrics" in b)
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)  # our own README
    assert isinstance(namespace["result"], camkit.Explanation)


def test_runs_repeat_and_leave_the_global_random_state(shapes) -> None:
    model, data = shapes
    settings = Settings(steps=2, fill=0.5, percentages=(50,), sanity_images=0, seed=3)
    state = torch.random.get_rng_state()
    first = evaluate(model, _batches(data, 6), ["smoothgradcam++"], ["drop", "road"],
                     settings=settings)  # fmt: skip
    assert torch.equal(torch.random.get_rng_state(), state)
    again = evaluate(model, _batches(data, 6), ["smoothgradcam++"], ["drop", "road"],
                     settings=settings)  # fmt: skip
    for column in ("Avg drop %", "ROAD MoRF acc"):
        assert first.rows["smoothgradcam++"][column] == again.rows["smoothgradcam++"][column]
