"""The evaluation loop: its figures equal the metrics called directly, whatever the batches."""

from __future__ import annotations

import csv
import importlib
import io
import json
import sys

import pytest
import torch

import camkit
from camkit import metrics
from camkit.data import ShapesDataset
from camkit.evaluation import (
    METRICS,
    Batch,
    Evaluation,
    Report,
    Settings,
    default_metrics,
    evaluate,
)
from camkit.models import load_shapes_model


@pytest.fixture(scope="module")
def shapes() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    return load_shapes_model(), ShapesDataset(6, size=64, seed=11).stack()


def _batches(data: dict[str, torch.Tensor], size: int, masks: bool = True) -> list[Batch]:
    return [
        Batch(
            data["image"][i : i + size],
            data["label"][i : i + size],
            data["mask"][i : i + size] if masks else None,
        )
        for i in range(0, data["image"].shape[0], size)
    ]


def test_figures_equal_the_metrics_called_directly(shapes) -> None:
    model, data = shapes
    settings = Settings(steps=4, fill=0.5, percentages=(20, 80), sanity_images=2, tolerance=4.0)
    report = evaluate(model, _batches(data, 6), ["gradcam"], settings=settings)
    row = report.rows["gradcam"]
    x, labels = data["image"], data["label"]
    explanation = camkit.GradCAM(model)(x, labels)
    drop = metrics.confidence(model, x, explanation, fill=0.5)
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
    assert report.details["sanity"]["gradcam"]["steps"] == sanity.steps


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
    report = evaluate(
        model, _batches(data, 3), ["cam", "gradcam"], ["drop", "deletion"], settings=settings
    )
    for column in ("Avg drop %", "Deletion AUC"):
        assert report.rows["cam"][column] == pytest.approx(report.rows["gradcam"][column], rel=1e-4)
    win = report.tables["win"]
    assert win["cam"]["gradcam"] + win["gradcam"]["cam"] <= 100.0
    assert set(win) == {"cam", "gradcam"}


def test_localisation_needs_masks(shapes) -> None:
    model, data = shapes
    report = evaluate(
        model,
        _batches(data, 6, masks=False),
        ["gradcam"],
        ["drop", "pointing"],
        settings=Settings(fill=0.5),
    )
    assert "Pointing %" not in report.rows["gradcam"]
    assert "Avg drop %" in report.rows["gradcam"]


def test_unknown_names_are_refused(shapes) -> None:
    model, data = shapes
    with pytest.raises(
        ValueError, match=r"unknown method 'gradcam\+' \(did you mean 'gradcam\+\+'"
    ):
        evaluate(model, _batches(data, 6), ["gradcam+"])
    with pytest.raises(ValueError, match="unknown metric 'aopc'; valid: drop, deletion"):
        evaluate(model, _batches(data, 6), ["gradcam"], ["aopc"])


def test_report_writes_markdown_csv_and_json() -> None:
    report = Report(
        rows={"a": {"Avg drop %": 12.345, "Pointing %": 50.0}, "b": {"Avg drop %": 3.0}},
        tables={"win": {"a": {"a": 0.0, "b": 25.0}, "b": {"a": 75.0, "b": 0.0}}},
        info={"images": 4},
    )
    lines = report.to_markdown().splitlines()
    assert lines[0] == "| Method | Avg drop % ↓ | Pointing % ↑ |"
    assert lines[2] == "| a | 12.35 | 50.0 |"
    assert lines[3] == "| b | 3.00 | - |"
    assert "| b | 75.0 |  |" in lines
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert rows == [["method", "Avg drop %", "Pointing %"], ["a", "12.345", "50"], ["b", "3", ""]]
    assert json.loads(report.to_json())["tables"]["win"]["b"]["a"] == 75.0


@pytest.mark.slow
def test_the_readme_metrics_example_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    example = next(b for b in blocks if "from camkit import metrics" in b)
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)  # our own README
    assert isinstance(namespace["result"], camkit.Explanation)


@pytest.mark.slow
def test_runs_repeat_and_leave_the_global_random_state(shapes) -> None:
    model, data = shapes
    settings = Settings(steps=2, fill=0.5, percentages=(50,), sanity_images=0, seed=3)
    state = torch.random.get_rng_state()
    first = evaluate(
        model, _batches(data, 6), ["smoothgradcam++"], ["drop", "road"], settings=settings
    )
    assert torch.equal(torch.random.get_rng_state(), state)
    again = evaluate(
        model, _batches(data, 6), ["smoothgradcam++"], ["drop", "road"], settings=settings
    )
    for column in ("Avg drop %", "ROAD MoRF acc"):
        assert first.rows["smoothgradcam++"][column] == again.rows["smoothgradcam++"][column]


def test_a_metric_in_one_file_gets_its_flag_column_interval_and_plot(tmp_path, capsys) -> None:
    """tests/helpers/peak_metric.py is the whole plug-in: one setting, one curve. Nothing else
    in camkit names it, yet the command has its flag and range check, and the report its
    column, its interval and its plot."""
    from camkit.cli import main
    from camkit.evaluation import METRICS, unregister_metric

    sys.modules.pop("helpers.peak_metric", None)
    importlib.import_module("helpers.peak_metric")
    try:
        assert "peak" in METRICS
        with pytest.raises(SystemExit):
            main(["evaluate", "--help"])
        assert "--peak-level" in capsys.readouterr().out
        assert (
            main(
                [
                    "evaluate",
                    "--metrics",
                    "peak",
                    "--peak-level",
                    "2",
                    "--out",
                    str(tmp_path / "no"),
                ]
            )
            == 2
        )
        assert "--peak-level 2.0: at most 1" in capsys.readouterr().err
        out = tmp_path / "o"
        code = main(
            [
                "evaluate",
                "--metrics",
                "peak,drop",
                "--methods",
                "cam,gradcam",
                "--limit",
                "6",
                "--peak-level",
                "0.5",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        assert code == 0
        report = json.loads((out / "results.json").read_text())
        data = ShapesDataset(6, size=96, seed=31337).stack()
        maps = camkit.CAM(load_shapes_model())(data["image"], data["label"]).maps[:, 0]
        expected = 100 * float((maps.flatten(1) >= 0.5).float().mean())
        assert report["rows"]["cam"]["Peak share %"] == pytest.approx(expected, rel=1e-5)
        low, high = report["intervals"]["cam"]["Peak share %"]
        assert low <= expected <= high
        assert len(report["curves"]["cam"]["peak_share"]) == 10
        assert (out / "peak.png").is_file()
        assert "Peak share % ↓" in (out / "results.md").read_text()
    finally:
        unregister_metric("peak")
        sys.modules.pop("helpers.peak_metric", None)


def test_the_report_counts_time_and_passes_per_method_and_metric() -> None:
    data = ShapesDataset(6, seed=2).stack()
    batches = [
        Batch(data["image"][:4], data["label"][:4]),
        Batch(data["image"][4:], data["label"][4:]),
    ]
    settings = Settings(steps=4)
    report = evaluate(
        load_shapes_model(), batches, ["gradcam", "cam"], ["drop", "deletion"], settings=settings
    )
    passes = report.info["passes"]
    assert passes["clean"] == {"forward": 2, "forward_images": 6, "backward": 0}
    # Grad-CAM: one forward per batch and one backward; Average Drop: one masked pass per batch;
    # deletion: one chunk of `steps` perturbed rows per image and batch; and once, the
    # automatic layer's probe (one image).
    assert passes["gradcam"] == {
        "forward": 1 + 2 + 2 + 2,
        "forward_images": 1 + 6 + 6 + 6 * 4,
        "backward": 2,
    }
    assert passes["cam"]["backward"] == 0
    assert set(report.info["seconds_per_task"]["gradcam"]) == {"explain", "drop", "deletion"}
    assert "| gradcam |" in report.to_markdown().split("Cost:")[1]


def test_the_sanity_checks_passes_on_the_model_copies_are_counted() -> None:
    data = ShapesDataset(2, seed=2).stack()
    report = evaluate(
        load_shapes_model(),
        [Batch(data["image"], data["label"])],
        ["gradcam"],
        ["sanity"],
        settings=Settings(sanity_images=2),
    )
    steps = len(report.details["sanity"]["gradcam"]["steps"])
    # the explanation (with its one-image layer probe), then the original and one explanation
    # per randomisation step on the copy (each with its layer probe)
    assert report.info["passes"]["gradcam"]["forward"] >= 2 + steps


def test_without_named_metrics_the_default_ones_run(shapes) -> None:
    # The catalogue's other metrics (re-explanations, hundreds of passes) run only when named:
    # a plain evaluate() is the default run's minute, not the catalogue's hour.
    model, _ = shapes
    evaluation = Evaluation(model, ["gradcam"], settings=Settings(resamples=0))
    assert evaluation.metrics == default_metrics()
    assert "sanity" in evaluation.metrics
    assert "sensitivity" not in evaluation.metrics
    assert set(default_metrics()) < set(METRICS)


# Cheap settings for every metric of the catalogue (the figures are not the point here).
CHEAP = {
    "steps": 4,
    "sanity_images": 2,
    "sensitivity_samples": 2,
    "lipschitz_samples": 2,
    "fc_runs": 4,
    "order_groups": 4,
    "mc_samples": 2,
    "patch": 32,
    "regions": 4,
    "sn_sizes": 2,
    "sn_runs": 2,
    "irof_segments": 4,
    "infidelity_samples": 2,
    "stability_samples": 2,
    "continuity_steps": 2,
    "smprt_samples": 2,
}


def test_every_metric_of_the_catalogue_runs_by_name_and_its_statistics_give_its_figures(
    shapes,
) -> None:
    # The whole catalogue through the loop, two batches: each column's statistic, over the
    # images as they are, is the table's figure, and each figure is inside its interval.
    model, data = shapes
    evaluation = Evaluation(
        model, ["gradcam"], list(METRICS), settings=Settings(resamples=50, **CHEAP)
    )
    for start, batch in zip((0, 3), _batches(data, 3), strict=True):
        evaluation.add(evaluation.measure(batch, start))
    report = evaluation.report()
    row, checked = report.rows["gradcam"], 0
    for plugin in evaluation.plugins["gradcam"].values():
        for column, (count, figure) in plugin.statistics().items():
            whole = float(figure(torch.arange(count)[None])[0])
            if whole != whole:  # NaN: a column no image has (left out of the table)
                assert column not in row
                continue
            assert whole == pytest.approx(row[column], rel=1e-5), column
            low, high = report.intervals["gradcam"][column]
            assert low - 1e-6 <= row[column] <= high + 1e-6, column
            checked += 1
    print(f"{checked} columns of {len(METRICS)} metrics: {sorted(row)}")
    assert checked == len(row) - 1  # every column but "Explain s"


@pytest.mark.slow
def test_bootstrap_statistics_reproduce_the_figures_and_intervals_cover_them(shapes) -> None:
    model, data = shapes
    settings = Settings(steps=4, sanity_images=4, resamples=200)
    evaluation = Evaluation(model, ["cam", "gradcam", "gradcam++"], settings=settings)
    for start, batch in zip((0, 3), _batches(data, 3), strict=True):
        evaluation.add(evaluation.measure(batch, start))
    report = evaluation.report()
    for method, plugins in evaluation.plugins.items():
        for plugin in plugins.values():
            for column, (count, figure) in plugin.statistics().items():
                # On the images as they are, each statistic is the table's figure.
                whole = float(figure(torch.arange(count)[None])[0])
                assert whole == pytest.approx(report.rows[method][column], rel=1e-5), column
                low, high = report.intervals[method][column]
                assert low - 1e-6 <= report.rows[method][column] <= high + 1e-6, column
    # CAM and Grad-CAM are the same maps on this network: never a significant difference.
    for column, table in report.differ.items():
        assert table["cam"]["gradcam"] is False, column
        assert all(table[a][b] == table[b][a] for a in table for b in table[a])
    assert report.differ["Sanity rho"]["gradcam"]["gradcam++"] is True  # 0.1 against 0.7
    again = Evaluation(model, ["cam", "gradcam", "gradcam++"], settings=settings)
    for start, batch in zip((0, 3), _batches(data, 3), strict=True):
        again.add(again.measure(batch, start))
    assert again.report().intervals == report.intervals  # seeded
    markdown = report.to_markdown()
    assert "± half the 95% bootstrap interval over images (200 resamples" in markdown
    assert " ±" in markdown.splitlines()[2]


def test_a_small_run_has_the_figures_it_had_before_the_speed_work() -> None:
    # small_run_before_speedup.json: this run's figures from camkit 0.5.0 before ROAD, SSIM and
    # the sanity check were made faster (commit 4de77d2). The work changed the arithmetic, not
    # the metrics: every figure agrees within float32 rounding. The reference was made on
    # another CPU: its kernels round differently (on an AMD EPYC the largest difference is
    # 1.4e-5 relative, a Deletion AUC of 0.234127 against 0.234124), hence rel 1e-4.
    from pathlib import Path

    data = ShapesDataset(8, seed=7).stack()
    batches = [
        Batch(data["image"][i : i + 4], data["label"][i : i + 4], data["mask"][i : i + 4])
        for i in (0, 4)
    ]
    settings = Settings(steps=8, sanity_images=4, resamples=0, fill=0.5)
    methods = ["cam", "gradcam", "ablationcam"]
    report = evaluate(load_shapes_model(), batches, methods, settings=settings)
    before = json.loads((Path(__file__).parent / "small_run_before_speedup.json").read_text())
    for method, figures in before.items():
        for column, value in figures.items():
            now = report.rows[method][column]
            print(f"{method:12} {column:14} before {value:.6f} now {now:.6f}")
            assert now == pytest.approx(value, rel=1e-4, abs=1e-5), (method, column)


def test_a_costly_method_is_checked_on_fewer_images_with_its_own_options(shapes) -> None:
    # Score-CAM costs 1 + channels passes an input: its randomisation check takes the first
    # sanity_costly_images inputs, Grad-CAM's the first sanity_images; the details say so.
    model, data = shapes
    x, labels = data["image"], data["label"]
    settings = Settings(sanity_images=4, sanity_costly_images=2, resamples=0)
    methods = ["gradcam", "scorecam", "sobel", "fullgrad"]  # sobel's layer is "input"
    report = evaluate(model, [Batch(x[:4], labels[:4])], methods, ["sanity"], settings=settings)
    details = report.details["sanity"]
    assert details["gradcam"]["sanity_images"] == details["sobel"]["sanity_images"] == 4
    assert report.rows["sobel"]["Sanity rho"] == pytest.approx(1.0)  # a map of the input
    assert details["scorecam"]["sanity_images"] == 2
    # The method's options reach the randomised copies: a 4-channel Score-CAM is cheaper.
    evaluation = Evaluation(
        model,
        ["scorecam"],
        ["sanity"],
        settings=settings,
        method_options={"scorecam": {"channels": 4}},
    )
    evaluation.add(evaluation.measure(Batch(x[:4], labels[:4])))
    scored = evaluation.report().info["passes"]["scorecam"]["forward_images"]
    plain = report.info["passes"]["scorecam"]["forward_images"]
    assert scored < plain / 4, (scored, plain)


def test_a_metric_failing_after_the_last_batch_loses_its_column_not_the_report(
    shapes, monkeypatch
) -> None:
    # The sanity check's after-the-last-batch work raising for one method: the other figures
    # and methods stay, the report's info and a warning say what was left out and why.
    from camkit import metrics as camkit_metrics
    from camkit.errors import CamkitWarning

    model, data = shapes
    real = camkit_metrics.cascading_randomisation

    def failing_for_cam(model, x, method, *args, **kwargs):
        if method == "cam":
            raise RuntimeError("the randomised copy could not run\nsecond line")
        return real(model, x, method, *args, **kwargs)

    monkeypatch.setattr(camkit_metrics, "cascading_randomisation", failing_for_cam)
    settings = Settings(sanity_images=2, resamples=0)
    batches = _batches(data, 6, masks=False)
    with pytest.warns(CamkitWarning, match="left out cam: sanity: the randomised copy"):
        report = evaluate(model, batches, ["cam", "gradcam"], ["drop", "sanity"], settings=settings)
    assert report.info["failed"] == ["cam: sanity: the randomised copy could not run"]
    assert "Sanity rho" not in report.rows["cam"]
    assert "Avg drop %" in report.rows["cam"]
    assert "Sanity rho" in report.rows["gradcam"]


def test_every_metric_declares_a_known_category_and_the_table_groups_by_it() -> None:
    from camkit.evaluation import METRICS
    from camkit.evaluation.plugins import CATEGORIES
    from camkit.evaluation.report import column_categories

    assert {cls.category for cls in METRICS.values()} <= set(CATEGORIES) - {"other"}
    data = ShapesDataset(6, seed=2).stack()
    batch = Batch(data["image"], data["label"], data["mask"])
    chosen = ["sparseness", "pointing", "deletion", "roc-auc", "complexity"]
    report = evaluate(
        load_shapes_model(),
        [batch],
        ["gradcam", "randomcam"],
        chosen,
        settings=Settings(steps=4, resamples=50),
    )
    kinds = [column_categories()[c] for c in report.columns if c != "Explain s"]
    assert kinds == ["faithfulness", "localisation", "localisation", "complexity", "complexity"]
    table = report.to_markdown()
    assert "Sparseness ↑" in table
    assert "Complexity ↓" in table
    kinds_line = "Columns by kind (faithfulness: Deletion AUC; localisation: Pointing %, ROC AUC; "
    assert kinds_line in table
    # each new column has an interval over images, as the others
    assert {"ROC AUC", "Sparseness", "Complexity"} <= set(report.intervals["gradcam"])


def test_the_mask_metrics_beat_a_random_map_on_the_bundled_model() -> None:
    # the bundled model's Grad-CAM finds the object (pointing 98%): every localisation figure
    # must tell it from RandomCAM's noise on the same images
    data = ShapesDataset(24, seed=5).stack()
    batch = Batch(data["image"], data["label"], data["mask"])
    chosen = ["relevance-mass", "relevance-rank", "top-k", "roc-auc"]
    report = evaluate(
        load_shapes_model(),
        [batch],
        ["gradcam", "randomcam"],
        chosen,
        settings=Settings(resamples=0),
    )
    for column in ("Mass acc %", "Rank acc %", "Top-k %", "ROC AUC"):
        good, noise = report.rows["gradcam"][column], report.rows["randomcam"][column]
        print(f"{column}: Grad-CAM {good:.3f}, RandomCAM {noise:.3f}")
        assert good > 1.4 * noise


def test_faithfulness_correlation_runs_when_named_and_ranks_grad_cam_above_noise() -> None:
    from camkit.evaluation import METRICS

    assert not METRICS["faithfulness-correlation"].default  # 100 passes an input: named only
    data = ShapesDataset(12, seed=4).stack()
    batch = Batch(data["image"], data["label"], data["mask"])
    settings = Settings(resamples=0, fc_runs=40, fc_subset=300, fill=0.0)
    report = evaluate(
        load_shapes_model(),
        [batch],
        ["gradcam", "randomcam"],
        ["faithfulness-correlation"],
        settings=settings,
    )
    good = report.rows["gradcam"]["Faith. corr."]
    noise = report.rows["randomcam"]["Faith. corr."]
    print(f"faithfulness correlation: Grad-CAM {good:.3f}, RandomCAM {noise:.3f}")
    assert good > noise + 0.1


def test_random_logit_tells_class_maps_from_class_blind_ones_and_sensitivity_runs() -> None:
    import warnings

    from camkit.evaluation import METRICS

    assert METRICS["random-logit"].default  # one more explanation an input
    assert not METRICS["sensitivity"].default  # sensitivity_samples more
    data = ShapesDataset(10, seed=6).stack()
    batch = Batch(data["image"], data["label"], data["mask"])
    settings = Settings(resamples=0, sensitivity_samples=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", camkit.CamkitWarning)  # an absent class's map may be 0
        report = evaluate(
            load_shapes_model(),
            [batch],
            ["gradcam", "eigencam"],
            ["random-logit", "sensitivity"],
            settings=settings,
        )
    rows = report.rows
    print({m: {c: round(v, 3) for c, v in r.items()} for m, r in rows.items()})
    assert rows["eigencam"]["Random logit SSIM"] == pytest.approx(1.0)  # no class at all
    assert rows["gradcam"]["Random logit SSIM"] < 0.5
    for method in ("gradcam", "eigencam"):
        assert 0 < rows[method]["Avg-sens."] <= rows[method]["Max-sens."] < 2


def test_every_metric_says_what_it_is_needs_and_costs(capsys) -> None:
    from camkit.cli import main
    from camkit.evaluation import METRICS, Load
    from camkit.evaluation.plugins import NEEDS

    for cls in METRICS.values():
        assert set(cls.needs) <= set(NEEDS), cls.name
    load = Load(images=50, explain=2.0, steps=7)
    assert METRICS["random-logit"].describe(Settings(), load) == (
        "random-logit (randomisation): Random logit SSIM ↓; needs re-explanations, another "
        "class; passes per input: 2"
    )
    assert "needs object masks" in METRICS["roc-auc"].describe(Settings(), load)
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    shown = capsys.readouterr().out
    for name, cls in METRICS.items():  # each metric on its own line, a star if named only
        assert f"  {'' if cls.default else '* '}{name} ({cls.category}): " in shown
