"""`camkit evaluate`: the bundled benchmark and a user's folder, run in-process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from camkit.cli import main
from camkit.data import CLASSES, ShapesDataset
from camkit.evaluation import METRICS, plots_of
from camkit.overlay import to_pil

# the default run's plots (the named-only metrics draw theirs when named)
PLOTS = [plot.name for plot in plots_of([n for n, cls in METRICS.items() if cls.default])]
QUICK = ["--steps", "4", "--sanity-images", "2", "--batch-size", "3"]


@pytest.mark.slow
def test_bundled_benchmark_writes_table_files_and_plots(tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    code = main(["evaluate", "--limit", "4", "--methods", "gradcam,cam", "--out", str(out), *QUICK])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.out.startswith("| Method | Avg drop % ↓ |")
    assert "evaluating:" not in printed.err  # no progress bar when stderr is not a terminal
    default = [name for name, cls in METRICS.items() if cls.default]  # all have masks here
    assert f"camkit: evaluating 4 images x 2 methods x {len(default)} metrics" in printed.err
    table = (out / "results.md").read_text()
    assert table in printed.out
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["method"] for r in rows] == ["gradcam", "cam"]
    assert set(rows[0]) >= {
        "Avg drop %",
        "Deletion AUC",
        "ROAD LeRF acc",
        "Pointing %",
        "MaxBoxAcc %",
        "Sanity rho",
    }
    report = json.loads((out / "results.json").read_text())
    assert report["info"]["images"] == 4
    assert report["info"]["input_size"] == [96, 96]
    assert report["info"]["pointing_tolerance_px"] == pytest.approx(15 * 96 / 224)
    assert report["info"]["command"].startswith("camkit evaluate --limit 4")
    assert len(report["curves"]["gradcam"]["deletion"]) == 5
    # Every plot written is one the up-front check of --out knows (PLOTS), and all are written.
    assert {p.stem for p in out.glob("*.png")} == set(PLOTS)
    for name in PLOTS:
        with Image.open(out / f"{name}.png") as plot:
            assert plot.size == (760, 440)


def _folder(root: Path, masks: bool) -> Path:
    data = ShapesDataset(6, size=64, seed=3)
    for index in range(len(data)):
        item = data[index]
        folder = root / CLASSES[int(item["label"])]
        folder.mkdir(parents=True, exist_ok=True)
        to_pil(item["image"]).save(folder / f"{index}.png")
        if masks:
            to_pil(item["mask"][None].float().expand(3, -1, -1)).save(folder / f"{index}.mask.png")
    return root


def test_a_class_per_folder_dataset_with_masks(tmp_path, capsys) -> None:
    root = _folder(tmp_path / "data", masks=True)
    (root / CLASSES[0] / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(root), "--methods", "gradcam", "--out", str(out), *QUICK]
    code = main([*args, "--metrics", "drop,pointing"])
    printed = capsys.readouterr()
    assert code == 1  # the broken image is reported, the others are evaluated
    assert "broken.png: not a readable image" in printed.err
    report = json.loads((out / "results.json").read_text())
    assert report["info"]["images"] == 6
    assert report["info"]["input_size"] == [64, 64]
    assert report["rows"]["gradcam"]["Pointing %"] > 50  # labels follow the model's class names
    assert "Deletion AUC" not in report["rows"]["gradcam"]


def test_a_folder_without_masks_skips_localisation(tmp_path, capsys) -> None:
    root = _folder(tmp_path / "data", masks=False)
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--data",
            str(root),
            "--methods",
            "cam",
            "--metrics",
            "drop",
            "--out",
            str(out),
            *QUICK,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(root),
                "--methods",
                "cam",
                "--out",
                str(out),
                "--metrics",
                "",
                *QUICK,
                "--sanity-images",
                "0",
            ]
        )
        == 0
    )
    report = json.loads((out / "results.json").read_text())
    assert "pointing" not in report["info"]["metrics"]
    assert "Avg drop %" in report["rows"]["cam"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "nowhere"], "--data 'nowhere': use 'shapes'"),
        (["--metrics", "aopc"], "unknown metric 'aopc'; valid: drop, deletion"),
        (["--methods", "gradcam+"], "unknown method 'gradcam+'"),
        (["--limit", "0"], "--limit 0: must be at least 1"),
        (["--steps", "1000000000"], "--steps 1000000000: at most 1024"),
        (["--sanity-images", "1000000000"], "--sanity-images 1000000000: at most 1024"),
        (["--size", "100000"], "--size 100000: at most 4096 (pixels)"),
        (
            ["--size", "4096", "--batch-size", "4096"],
            "--batch-size 4096 at 4096 x 4096 pixels: about 3072.0 GiB of images at once",
        ),
    ],
)
def test_usage_errors_exit_2(tmp_path, capsys, args, message) -> None:
    assert main(["evaluate", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()


def test_classes_beyond_the_model_are_a_usage_error(tmp_path, capsys) -> None:
    root = tmp_path / "data"
    for index in range(8):  # 8 unknown class names: numbered 0..7, the model has 6 outputs
        (root / f"class{index}").mkdir(parents=True)
        to_pil(torch.rand(3, 32, 32)).save(root / f"class{index}" / "a.png")
    code = main(["evaluate", "--data", str(root), "--methods", "cam", "--out", str(tmp_path)])
    assert code == 2
    assert "does not exist in a model with 6 outputs" in capsys.readouterr().err


def _torchvision_run(tmp_path: Path, name: str, masks: bool, *args: str) -> tuple[int, Path]:
    """Evaluate a folder with torchvision model `name` (random weights, 6-class head) loaded
    from a local checkpoint."""
    import torchvision

    root = _folder(tmp_path / "data", masks=masks)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=len(CLASSES))  # a fine-tuned head
    torch.save(model.state_dict(), tmp_path / "net.pt")
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--data",
            str(root),
            "--model",
            name,
            "--weights",
            str(tmp_path / "net.pt"),
            "--size",
            "64",
            "--out",
            str(out),
            *QUICK,
            *args,
        ]
    )
    return code, out


def test_a_torchvision_model_with_a_local_checkpoint(tmp_path, capsys) -> None:
    code, out = _torchvision_run(
        tmp_path, "resnet18", True, "--methods", "gradcam", "--metrics", "drop,deletion,energy"
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    report = json.loads((out / "results.json").read_text())
    assert report["info"]["input_size"] == [64, 64]
    assert report["info"]["images"] == 6
    assert report["info"]["fill"] != [0.5, 0.5, 0.5]  # the mean of normalised inputs
    assert set(report["rows"]["gradcam"]) == {
        "Avg drop %",
        "Increase %",
        "Deletion AUC",
        "Energy %",
        "Explain s",
    }


def test_a_method_that_does_not_fit_the_model_is_reported_and_left_out(tmp_path, capsys) -> None:
    # mobilenet_v3_small's head is not global average pooling + one linear layer: no CAM
    code, out = _torchvision_run(
        tmp_path, "mobilenet_v3_small", False, "--methods", "cam,gradcam", "--metrics", "drop"
    )
    printed = capsys.readouterr()
    assert code == 1
    assert "camkit: error: cam: " in printed.err
    report = json.loads((out / "results.json").read_text())
    assert list(report["rows"]) == ["gradcam"]


# Hostile and broken input (issue 9).
def test_an_unknown_class_folder_is_a_usage_error_not_a_relabelling(tmp_path, capsys) -> None:
    root = _folder(tmp_path / "data", masks=False)
    (root / "zebra").mkdir()
    to_pil(torch.rand(3, 64, 64)).save(root / "zebra" / "z.png")
    code = main(["evaluate", "--data", str(root), "--methods", "cam", "--out", str(tmp_path / "o")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1
    assert "class folder(s) zebra of" in lines[0]
    assert "valid: disc, square, triangle" in lines[0]
    assert not (tmp_path / "o").exists()


def test_folders_named_after_no_class_are_numbered_with_a_warning(tmp_path, capsys) -> None:
    root = tmp_path / "data"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        to_pil(torch.rand(3, 32, 32)).save(root / name / "x.png")
    code = main(
        [
            "evaluate",
            "--data",
            str(root),
            "--methods",
            "cam",
            "--metrics",
            "drop",
            "--out",
            str(tmp_path / "o"),
            *QUICK,
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "camkit: warning: no folder of" in err
    assert "(a = class 0 = disc, ...)" in err


def test_a_corrupt_image_that_sorts_first_does_not_block_the_run(tmp_path, capsys) -> None:
    root = _folder(tmp_path / "data", masks=False)
    (root / CLASSES[0] / "0000-corrupt.png").write_bytes(b"\x89PNG broken")
    code = main(
        [
            "evaluate",
            "--data",
            str(root),
            "--methods",
            "gradcam",
            "--metrics",
            "drop",
            "--out",
            str(tmp_path / "o"),
            *QUICK,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1  # reported; the other six are evaluated at their own size
    assert "0000-corrupt.png: not a readable image" in err
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert report["info"]["images"] == 6
    assert report["info"]["input_size"] == [64, 64]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fill", "grey"], "--fill 'grey': give 'mean' or a number"),
        (["--metrics", ","], "--metrics ',' names no metric"),
        (["--tolerance", "nan"], "--tolerance nan: must be a finite number"),
        (["--device", "gpu"], "--device 'gpu' is not a device"),
        (["--size", "-1"], "--size -1: must be at least 0"),
    ],
)
def test_options_are_checked_before_the_model_loads(tmp_path, capsys, args, message) -> None:
    assert main(["evaluate", "--out", str(tmp_path / "o"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0], lines


def test_ctrl_c_keeps_the_finished_batches_and_exits_130(tmp_path, capsys, monkeypatch) -> None:
    from camkit.jobs import evaluate as evaluate_module

    real = evaluate_module._batches

    def two_then_interrupt(data, job, fail):
        batches = real(data, job, fail)

        def interrupted():
            yield next(batches)
            yield next(batches)
            raise KeyboardInterrupt

        return interrupted()

    monkeypatch.setattr(evaluate_module, "_batches", two_then_interrupt)
    out = tmp_path / "o"
    code = main(
        [
            "evaluate",
            "--limit",
            "9",
            "--methods",
            "gradcam,cam",
            "--metrics",
            "drop,pointing,sanity",
            "--out",
            str(out),
            *QUICK,
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 130
    assert "Traceback" not in "".join(lines)
    assert (
        lines[-1]
        == f"camkit: interrupted; wrote the results of the 6 images finished (of 9) to {out}/"
    )
    report = json.loads((out / "results.json").read_text())
    assert report["info"]["images"] == 6
    assert report["info"]["interrupted"] is True
    assert "Sanity rho" not in report["rows"]["gradcam"]
    monkeypatch.undo()
    full = main(
        [
            "evaluate",
            "--limit",
            "6",
            "--methods",
            "gradcam,cam",
            "--metrics",
            "drop,pointing",
            "--out",
            str(tmp_path / "full"),
            *QUICK,
        ]
    )
    assert full == 0
    complete = json.loads((tmp_path / "full" / "results.json").read_text())
    for method in ("gradcam", "cam"):  # the kept figures are exactly those of the 6 images
        for column in ("Avg drop %", "Pointing %"):
            assert report["rows"][method][column] == complete["rows"][method][column]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "data", "extra", "methods"),
    [
        ("shortcut", "shortcut", [], ("gradcam", "scorecam", "lrp")),
        ("vit-shortcut", "shortcut", [], ("gradcam", "scorecam", "attnlrp")),
        ("deep", "hard", ["--layer", "features.6.0"], ("gradcam", "scorecam")),
    ],
)
def test_the_other_bundled_benchmarks(tmp_path, capsys, model, data, extra, methods) -> None:
    out = tmp_path / data
    code = main(
        [
            "evaluate",
            "--model",
            model,
            "--data",
            data,
            "--limit",
            "6",
            "--methods",
            ",".join(methods),
            "--metrics",
            "pointing,energy",
            "--out",
            str(out),
            *extra,
            *QUICK,
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    report = json.loads((out / "results.json").read_text())
    assert report["info"]["images"] == 6
    assert report["info"]["model"] == model
    assert set(report["rows"]) == set(methods)
    low, high = report["intervals"]["scorecam"]["Pointing %"]
    assert 0 <= low <= report["rows"]["scorecam"]["Pointing %"] <= high <= 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "shortcut", "--weights", "mine.pt"], "has its shipped weights only"),
        (["--model", "deep", "--weights", "mine.pt"], "--weights DEFAULT (shipped) or random"),
        (["--model", "deep", "--layer", "features.9"], "features.9"),
    ],
)
def test_the_other_bundled_models_refuse_what_does_not_fit(tmp_path, capsys, args, message) -> None:
    code = main(
        ["evaluate", "--data", "hard", "--limit", "2", "--out", str(tmp_path / "o"), *args, *QUICK]
    )
    assert code == 2
    assert message in capsys.readouterr().err


# Issue 21: masks that do not fit, and datasets where only some images have one.


def _masked_folder(root: Path, masked: set[int], size: int = 64) -> Path:
    data = ShapesDataset(6, size=size, seed=3)
    for index in range(len(data)):
        item = data[index]
        folder = root / CLASSES[int(item["label"])]
        folder.mkdir(parents=True, exist_ok=True)
        to_pil(item["image"]).save(folder / f"{index}.png")
        if index in masked:
            mask = to_pil(item["mask"][None].float().expand(3, -1, -1))
            mask.save(folder / f"{index}.mask.png")
    return root


def _report(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_a_mask_of_another_size_is_refused_and_its_image_evaluated(tmp_path, capsys) -> None:
    root = _masked_folder(tmp_path / "data", masked={0, 1, 2, 3, 4, 5})
    wrong = next(root.rglob("0.mask.png"))
    with Image.open(wrong) as mask:
        mask.resize((64, 40)).save(wrong)  # 64 wide, 40 high, for a 64 x 64 image
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--data",
            str(root),
            "--methods",
            "gradcam",
            "--out",
            str(out),
            "--metrics",
            "drop,pointing",
            *QUICK,
        ]
    )
    printed = capsys.readouterr()
    assert code == 1
    lines = printed.err.strip().splitlines()
    plan = [line for line in lines if line.startswith("camkit: evaluating 6 images x 1 methods")]
    assert len(plan) == 1  # what it will run, before the work
    assert [line for line in lines if line not in plan] == [
        f"camkit: error: {wrong} is 64 x 40 pixels but its image 64 x 64: a mask must have its "
        f"image's size; {wrong.with_name('0.png')} is evaluated without a mask"
    ]
    info = _report(out)["info"]
    assert info["images"] == 6
    assert info["masked_images"] == 5
    assert "Pointing %: on the 5 of 6 images that have an object mask." in printed.out


@pytest.mark.slow
def test_localisation_metrics_count_only_the_images_with_masks(tmp_path, capsys) -> None:
    some = _masked_folder(tmp_path / "some", masked={1, 2, 4})
    only = _masked_folder(tmp_path / "only", masked={1, 2, 4})
    for path in only.rglob("*.png"):  # the same images, only those with masks
        if (
            not path.name.endswith(".mask.png")
            and not path.with_name(path.stem + ".mask.png").exists()
        ):
            path.unlink()
    figures = {}
    for name, root in (("some", some), ("only", only)):
        out = tmp_path / f"eval-{name}"
        code = main(
            [
                "evaluate",
                "--data",
                str(root),
                "--methods",
                "gradcam",
                "--out",
                str(out),
                "--metrics",
                "drop,pointing,energy",
                *QUICK,
            ]
        )
        printed = capsys.readouterr()
        assert code == 0, printed.err
        figures[name] = _report(out)
    assert figures["some"]["info"]["masked_images"] == 3
    assert figures["some"]["info"]["images"] == 6
    for column in ("Pointing %", "Energy %"):  # measured on exactly the images with masks
        assert figures["some"]["rows"]["gradcam"][column] == pytest.approx(
            figures["only"]["rows"]["gradcam"][column]
        )
    assert (
        "Pointing %, Energy %: on the 3 of 6 images"
        in (tmp_path / "eval-some" / "results.md").read_text()
    )
    # The default metrics include localisation as soon as one image has a mask.
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(some),
                "--methods",
                "cam",
                "--out",
                str(tmp_path / "d"),
                "--metrics",
                "",
                *QUICK,
                "--sanity-images",
                "0",
            ]
        )
        == 0
    )
    assert "Pointing %" in _report(tmp_path / "d")["rows"]["cam"]


def test_localisation_asked_for_without_any_mask_says_why_it_is_absent(tmp_path, capsys) -> None:
    root = _masked_folder(tmp_path / "data", masked=set())
    code = main(
        [
            "evaluate",
            "--data",
            str(root),
            "--methods",
            "cam",
            "--out",
            str(tmp_path / "o"),
            "--metrics",
            "drop,pointing",
            *QUICK,
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    said = [line for line in err.strip().splitlines() if not line.startswith("camkit: evaluating")]
    assert said == [
        f"camkit: warning: pointing: no image of {root} has an object mask (<image stem>.mask.png "
        "beside the image), so these columns are left out"
    ]


def test_a_report_never_replaces_a_users_file(tmp_path, capsys) -> None:
    (tmp_path / "results.md").write_text("my notes")
    code = main(["evaluate", "--limit", "2", "--methods", "cam", "--out", str(tmp_path), *QUICK])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"camkit: error: --out {tmp_path}: results.md there were not written by camkit and are "
        "not replaced: move them, or choose another output folder"
    )
    assert (tmp_path / "results.md").read_text() == "my notes"


def test_evaluate_says_what_it_will_run_and_its_cost_before_it_starts(
    tmp_path, monkeypatch
) -> None:
    # The plan and its estimate come before any work, from passes counted per method and metric
    # (timed on the first batch); over LONG seconds, a warning says what would be cheaper.
    import warnings

    from camkit.errors import CamkitWarning
    from camkit.jobs import Collected, EvaluateJob, evaluate_dataset
    from camkit.jobs import evaluate as evaluate_job

    monkeypatch.setattr(evaluate_job, "LONG", 0.0)  # every evaluation is "long" here
    progress = Collected()
    job = EvaluateJob(
        out=tmp_path,
        methods=("gradcam", "scorecam"),
        limit=2,
        workers=0,
        metrics=("drop", "deletion", "sanity"),
        settings={"steps": 4},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CamkitWarning)
        evaluate_dataset(job, progress)
    (line,) = progress.notes
    assert line.startswith("evaluating 2 images x 2 methods x 3 metrics (drop, deletion, sanity)")
    assert "about" in line
    said = [str(w.message) for w in caught if issubclass(w.category, CamkitWarning)]
    (long,) = [s for s in said if s.startswith("this evaluation may take about")]
    assert "scorecam" in long  # the costliest method
    assert "--limit" in long  # and the way out


def test_each_metric_declares_its_passes() -> None:
    # Per evaluated input, beyond the shared clean pass: deletion one per step, ROAD one per
    # share and order, Average Drop one, the localisation and complexity metrics none; the
    # sanity check explains its images again at each randomisation step, random logit each
    # input once more, sensitivity once per sample, faithfulness correlation one per subset,
    # the ordered metrics one per group (and sample), the squares' one per square (at most
    # `regions`; 144 squares of 8 on 96 x 96).
    from camkit.evaluation import METRICS, Load, Settings

    settings = Settings(steps=16, sanity_images=16, sanity_costly_images=4)
    load = Load(images=50, explain=2.0, steps=7)
    passes = {name: METRICS[name]().passes(settings, load) for name in METRICS}
    assert passes == {
        "drop": 1.0,
        "deletion": 16.0,
        "insertion": 16.0,
        "road": 10.0,
        "pointing": 0.0,
        "energy": 0.0,
        "boxacc": 0.0,
        "sanity": 7 * 16 * 2.0 / 50,
        "sparseness": 0.0,
        "complexity": 0.0,
        "effective-complexity": 0.0,
        "relevance-mass": 0.0,
        "relevance-rank": 0.0,
        "top-k": 0.0,
        "roc-auc": 0.0,
        "faithfulness-correlation": 100.0,
        "sensitivity": 10 * 2.0,
        "random-logit": 2.0,
        "adcc": 3.0,
        "local-lipschitz": 10 * 2.0,
        "faithfulness-estimate": 16.0,
        "monotonicity": 16.0,
        "monotonicity-correlation": 16 * 10.0,
        "region-perturbation": 100.0,
        "selectivity": 144.0,
        "sensitivity-n": 5 * 20.0,
        "infidelity": 10.0,
        "sufficiency": 0.0,
        "relative-stability": 10 * 3.0,
        "completeness": 1.0,
        "non-sensitivity": 144.0,
        "input-invariance": 2.0,
        "continuity": 28 * 2.0,
        "consistency": 0.0,
        "mprt-independent": 7 * 16 * 2.0 / 50,
        "smooth-mprt": 8 * 16 * 2.0 * 10 / 50,
        "efficient-mprt": 2.0,
        "focus": 4 * 2.0,
        "irof": 50.0,
    }
    small = Load(images=50, explain=2.0, steps=7, size=(32, 32))  # 16 squares of 8
    assert METRICS["region-perturbation"]().passes(settings, small) == 16.0
    assert METRICS["selectivity"]().passes(settings, small) == 16.0
    costly = Load(images=50, explain=129.0, steps=7)  # Score-CAM: 4 images, not 16
    assert METRICS["sanity"]().passes(settings, costly) == 7 * 4 * 129.0 / 50
