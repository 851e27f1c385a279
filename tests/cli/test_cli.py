"""End-to-end: the `camkit` command in a temporary folder, as a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import camkit
from camkit.cli import main
from camkit.data import CLASSES
from camkit.files import LEDGER
from camkit.images import MAX_SIDE
from camkit.jobs.work import ImageFiles
from camkit.models import load_model
from camkit.overlay import to_pil
from helpers.nets import gap_net


def camkit_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camkit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    folder = tmp_path_factory.mktemp("default")
    return camkit_command("explain", cwd=folder), folder / "camkit-out"


def test_default_run_explains_the_bundled_samples(default_run) -> None:
    result, out = default_run
    assert result.returncode == 0, result.stderr
    assert "wrote 30 files for 6 input(s)" in result.stdout  # 3 overlays, grid, JSON each
    for name in CLASSES:
        for method in ("gradcam", "gradcam++", "cam"):
            with Image.open(out / f"{name}_{method}.png") as picture:
                assert picture.size == (96, 96)
                assert picture.mode == "RGB"
        with Image.open(out / f"{name}_grid.png") as picture:
            assert picture.width > 4 * 96
        summary = json.loads((out / f"{name}.json").read_text())
        assert set(summary) == {
            "image",
            "model",
            "input_size",
            "layers",
            "predictions",
            "targets",
            "methods",
            "files",
        }
        assert summary["model"] == "shapes"
        assert summary["input_size"] == [96, 96]
        assert summary["layers"] == ["features"]
        assert summary["predictions"][0]["name"] == name  # the bundled model gets them right
        assert summary["targets"][0]["name"] == name
        probabilities = [p["probability"] for p in summary["predictions"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert probabilities[0] > 0.5
        assert summary["files"]["overlays"]["gradcam"] == [f"{name}_gradcam.png"]
        assert summary["files"]["grid"] == f"{name}_grid.png"


def write_image(path: Path, size: tuple[int, int] = (40, 56)) -> Path:
    torch.manual_seed(0)
    to_pil(torch.rand(3, *size)).save(path)
    return path


@pytest.mark.slow
def test_bad_inputs_are_reported_and_the_rest_is_written(tmp_path) -> None:
    good = write_image(tmp_path / "good.png")
    (tmp_path / "broken.png").write_text("not an image")
    result = camkit_command(
        "explain",
        str(good),
        "missing.png",
        "broken.png",
        "--methods",
        "gradcam",
        "--out",
        "o",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "missing.png: no such file" in result.stderr
    assert "broken.png: not a readable image" in result.stderr
    assert {p.name for p in (tmp_path / "o").iterdir()} - {LEDGER} == {
        "good_gradcam.png",
        "good_grid.png",
        "good.json",
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet5O"], "unknown model 'resnet5O' (did you mean resnet50"),
        (
            ["--methods", "gradcam,spotcam"],
            "unknown method 'spotcam' (did you mean 'sscam', 'scorecam', 'iscam'?); valid: cam,",
        ),
        (
            ["--layer", "feature"],
            "no layer named 'feature' in ShapesNet; closest names: 'features'",
        ),
        (["--target", "hexagon"], "unknown target class 'hexagon'; valid: disc, square"),
        (["--weights", "nope", "--model", "resnet18"], "neither a file nor one of resnet18's"),
        (
            ["--method-options", "finercam.nope=1"],
            "--method-options: finercam has no option 'nope'; its options: base, compare, alpha, "
            "weighting",
        ),
        (
            ["--method-options", "kpcacam.kernel=bogus"],
            "--method-options: kernel must be linear, poly, rbf, sigmoid or cosine, got 'bogus'",
        ),
        (["--method-options", "sess"], "--method-options: 'sess': write a method's option as"),
    ],
)
def test_usage_errors_exit_2_and_name_the_choices(tmp_path, args, message) -> None:
    result = camkit_command("explain", *args, "--out", "o", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.slow
def test_torchvision_model_with_a_local_checkpoint_and_top_k(tmp_path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4)  # a fine-tuned head: 4 classes
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "a.png", (60, 90))
    write_image(folder / "b.jpg", (90, 60))
    result = camkit_command(
        "explain",
        "images",
        "--model",
        "resnet18",
        "--weights",
        "ckpt.pth",
        "--top",
        "2",
        "--out",
        "o",
        "--colormap",
        "hot",
        "--alpha",
        "0.7",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "o" / "a.json").read_text())
    assert summary["input_size"] == [256, 384]  # shorter side 256: ResNet-18's preprocessing
    assert [t["class"] for t in summary["targets"]] == [
        p["class"] for p in summary["predictions"][:2]
    ]
    assert len(summary["predictions"]) == 4
    assert summary["layers"] == ["layer4"]
    with Image.open(tmp_path / "o" / "b_gradcam++_2.png") as picture:
        assert picture.size == (256, 384)


@pytest.mark.slow
def test_exported_program_file_and_torchscript_refusal(tmp_path) -> None:
    model = gap_net()
    x = torch.rand(2, 3, 32, 32)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "net.pt2")
    torch.jit.script(model).save(tmp_path / "net.pt")
    write_image(tmp_path / "img.png", (32, 32))

    untrusted = camkit_command(
        "explain", "img.png", "--model", "net.pt2", "--out", "o", cwd=tmp_path
    )
    assert untrusted.returncode == 2
    assert "pass --trust-model" in untrusted.stderr
    assert len(untrusted.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    result = camkit_command(
        "explain", "img.png", "--model", "net.pt2", "--trust-model", "--out", "o", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "o" / "img.json").read_text())
    assert summary["layers"] == ["3"]
    assert summary["methods"] == ["gradcam", "gradcam++"]

    refused = camkit_command("explain", "img.png", "--model", "net.pt", cwd=tmp_path)
    assert refused.returncode == 2
    assert "TorchScript" in refused.stderr
    assert "torch.export" in refused.stderr


@pytest.mark.slow
def test_a_method_that_does_not_apply_fails_alone(tmp_path) -> None:
    write_image(tmp_path / "img.png", (64, 64))
    result = camkit_command(
        "explain",
        "img.png",
        "--model",
        "mobilenet_v3_small",
        "--methods",
        "cam,gradcam",
        "--out",
        "o",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "cam: CAM needs" in result.stderr
    assert "camkit.GradCAM" in result.stderr
    assert (tmp_path / "o" / "img_gradcam.png").exists()
    assert not (tmp_path / "o" / "img_cam.png").exists()


@pytest.mark.slow
def test_bundled_model_weights_from_a_file_or_random(tmp_path) -> None:
    from camkit.models import ShapesNet

    torch.manual_seed(0)
    torch.save(ShapesNet().state_dict(), tmp_path / "mine.pt")
    (tmp_path / "bad.pt").write_bytes(b"")
    shipped = camkit_command("explain", "--methods", "cam", "--out", "a", cwd=tmp_path)
    mine = camkit_command(
        "explain", "--weights", "mine.pt", "--methods", "cam", "--out", "b", cwd=tmp_path
    )
    assert shipped.returncode == 0, mine.stderr
    assert mine.returncode == 0, mine.stderr
    first = json.loads((tmp_path / "a" / "star.json").read_text())["predictions"][0]
    second = json.loads((tmp_path / "b" / "star.json").read_text())["predictions"][0]
    assert first["name"] == "star"
    assert second["score"] != first["score"]
    wrong = camkit_command("explain", "--weights", "nothing.pt", "--out", "c", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "give a state-dict file" in wrong.stderr
    broken = camkit_command("explain", "--weights", "bad.pt", "--out", "d", cwd=tmp_path)
    assert broken.returncode == 2
    assert "bad.pt is not a readable PyTorch checkpoint" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_layers_command_lists_the_layers_and_marks_the_automatic_one(tmp_path) -> None:
    result = camkit_command("layers", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["layer", "output", "shape", "layout", "grid"]
    marked = [line for line in lines if line.endswith("<- automatic")]
    assert len(marked) == 1
    assert marked[0].split()[0] == "features"
    assert "(1, 128, 12, 12)" in marked[0]
    assert "12 x 12" in marked[0]
    assert lines[-1] == (
        "camkit: 32 layers of shapes on a 96 x 96 input; automatic: features, the last feature "
        "map before global pooling"
    )
    # A probe of 100000 x 100000 pixels would exhaust memory.
    for size, rule in (("0", "must be at least 1"), ("100000", "at most 4096")):
        wrong = camkit_command("layers", "--size", size, cwd=tmp_path)
        assert wrong.returncode == 2
        assert f"--size {size}: {rule} (pixels)" in wrong.stderr


def test_save_maps_writes_the_library_maps(tmp_path) -> None:
    import numpy as np

    import camkit
    from camkit.cli import main
    from camkit.images import read_image
    from camkit.models import load_shapes_model

    image = write_image(tmp_path / "img.png", (48, 40))
    assert (
        main(
            [
                "explain",
                str(image),
                "--methods",
                "gradcam",
                "--top",
                "2",
                "--save-maps",
                "npy",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "explain",
                str(image),
                "--methods",
                "gradcam",
                "--save-maps",
                "pt",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    x = read_image(image)[None]
    explainer = camkit.GradCAM(load_shapes_model())
    top2 = explainer(x, targets=camkit.TopK(2))
    maps = np.load(tmp_path / "a" / "img_gradcam.npy")
    raw = np.load(tmp_path / "a" / "img_gradcam_raw.npy")
    assert maps.shape == (2, 48, 40)
    assert raw.shape == (2, 6, 5)
    np.testing.assert_allclose(maps, top2.maps[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(raw, top2.raw[0][0].numpy(), atol=1e-6)
    summary = json.loads((tmp_path / "a" / "img.json").read_text())
    assert summary["files"]["maps"] == {"gradcam": ["img_gradcam.npy", "img_gradcam_raw.npy"]}
    saved = torch.load(tmp_path / "b" / "img_gradcam.pt", weights_only=True)
    torch.testing.assert_close(saved["maps"], explainer(x).maps[0])
    assert saved["layers"] == ["features"]


def test_skip_existing_redoes_only_incomplete_inputs(tmp_path, capsys) -> None:
    from camkit.cli import main

    images = [str(write_image(tmp_path / f"img{i}.png", (32, 32))) for i in range(3)]
    out = tmp_path / "o"
    assert main(["explain", *images, "--methods", "gradcam", "--out", str(out)]) == 0
    (out / "img1.json").unlink()  # as if interrupted before img1's summary was written
    (out / "img2_gradcam.png").unlink()  # a listed file is gone
    before = (out / "img0_grid.png").stat().st_mtime_ns
    capsys.readouterr()
    assert (
        main(["explain", *images, "--methods", "gradcam", "--out", str(out), "--skip-existing"])
        == 0
    )
    said = capsys.readouterr().out
    assert "wrote 6 files for 3 input(s)" in said
    assert "(1 complete already, skipped)" in said
    assert (out / "img0_grid.png").stat().st_mtime_ns == before  # not rewritten
    assert (out / "img1.json").exists()
    assert (out / "img2_gradcam.png").exists()
    # Other methods asked for: nothing is complete
    assert (
        main(["explain", *images, "--methods", "gradcam,cam", "--out", str(out), "--skip-existing"])
        == 0
    )
    assert "wrote 12 files for 3 input(s)" in capsys.readouterr().out


def test_the_progress_bar_shows_rate_and_time_left_on_a_terminal(tmp_path, capsys, monkeypatch):
    from camkit.cli import main

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["explain", "--methods", "cam", "--out", str(tmp_path)]) == 0
    bar = capsys.readouterr().err
    assert "explaining: 100%" in bar
    assert "6/6" in bar
    assert "img/s" in bar


def test_skip_existing_redoes_a_corrupt_or_foreign_summary(tmp_path, capsys) -> None:
    from camkit.cli import main

    images = [str(write_image(tmp_path / f"img{i}.png", (32, 32))) for i in range(2)]
    out = tmp_path / "o"
    assert main(["explain", *images, "--methods", "gradcam", "--out", str(out)]) == 0
    (out / "img0.json").write_text("{ cut short")  # corrupt
    listed = '{"methods": ["gradcam"], "files": {"grid": "../img0.png"}}'  # outside: not ours
    (out / "img1.json").write_text(listed)
    capsys.readouterr()
    assert (
        main(["explain", *images, "--methods", "gradcam", "--out", str(out), "--skip-existing"])
        == 0
    )
    assert "wrote 6 files for 2 input(s)" in capsys.readouterr().out
    assert json.loads((out / "img0.json").read_text())["files"]["grid"] == "img0_grid.png"


def test_method_options_reach_the_methods(tmp_path) -> None:
    image = write_image(tmp_path / "one.png")
    out = tmp_path / "out"
    assert (
        main(
            [
                "explain",
                str(image),
                "--methods",
                "finercam,kpcacam",
                "--save-maps",
                "npy",
                "--method-options",
                "finercam.base=layercam",
                "finercam.compare=1",
                "kpcacam.kernel=rbf",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    loaded = load_model("shapes")
    item = ImageFiles([image], ["one"], loaded, MAX_SIDE)[0]
    assert isinstance(item, dict)
    x = item["input"][None]
    finer = camkit.FinerCAM(loaded.model, base="layercam", compare=1)(x)
    kpca = camkit.KPCACAM(loaded.model, kernel="rbf")(x)
    default = camkit.FinerCAM(loaded.model)(x)
    saved = np.load(out / "one_finercam.npy")
    np.testing.assert_allclose(saved, finer.maps[0].numpy(), atol=1e-6)
    assert np.abs(saved - default.maps[0].numpy()).max() > 1e-3  # the options made a difference
    np.testing.assert_allclose(np.load(out / "one_kpcacam.npy"), kpca.maps[0].numpy(), atol=1e-6)


def test_an_unknown_target_names_the_closest_classes_and_how_to_list_them(tmp_path, capsys):
    code = main(["explain", "--model", "resnet18", "--target", "cat", "--out", str(tmp_path)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2
    assert len(errors) == 1
    assert len(errors[0]) < 300  # not the 1,000 ImageNet classes
    for name in ("tiger cat", "Persian cat", "Egyptian cat"):
        assert f"'{name}'" in errors[0]
    assert "`camkit classes --model resnet18` lists all 1000" in errors[0]
    assert main(["classes", "--model", "resnet18"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1000
    assert listed[282] == "282\ttiger cat"
    assert main(["classes"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "0\tdisc"


def test_off_a_terminal_a_running_job_says_how_far_it_is(capsys) -> None:
    from camkit.cli.common import TerminalProgress

    progress = TerminalProgress("explaining", every=0.1)
    progress.start(3)
    time.sleep(0.35)
    progress.advance()
    time.sleep(0.25)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert "camkit: explaining: 0 of 3 done after 0s" in lines
    assert any(
        line.startswith("camkit: explaining: 1 of 3 done after") and line.endswith("left")
        for line in lines
    )
    count = len(lines)
    time.sleep(0.3)
    assert len(capsys.readouterr().err.splitlines()) == 0 < count  # closed: no more lines


def test_a_long_job_says_what_it_costs_before_it_starts(tmp_path, monkeypatch) -> None:
    from camkit.jobs import Collected, ExplainJob, explain_folder
    from camkit.jobs import explain as explain_job

    monkeypatch.setattr(explain_job, "WORTH_SAYING", 0.0)  # every job is "long" here
    progress = Collected()
    job = ExplainJob(out=tmp_path, methods=("gradcam", "scorecam"))
    explain_folder(job, progress)
    (line,) = progress.notes
    assert line.startswith("this job may take about")
    assert "6 input(s) of 96 x 96" in line
    assert "scorecam 129 passes an input" in line  # 128 channels at the bundled model's layer
    assert "--method-options scorecam.channels=64" in line


@pytest.mark.parametrize("command", ["explain", "evaluate", "layers", "classes", "app"])
def test_a_commands_help_names_only_options_it_takes(command, capsys) -> None:
    from camkit.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    text = capsys.readouterr().out
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))
    sub = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == command)
    taken = set(sub[1]._option_string_actions)
    assert named <= taken, f"camkit {command} --help names {sorted(named - taken)}"
