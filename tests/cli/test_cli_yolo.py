"""`camkit explain --model` with ultralytics YOLO networks: a checkpoint (a pickle, so only with
--trust-model) or a yaml with --weights; the top detection of each image is explained at the
three scales the detection head reads. Nothing is downloaded: the networks are built from
ultralytics' own yaml files with random weights."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import camkit
from camkit.cli import main
from camkit.images import read_image
from camkit.models import load_model

ultralytics = pytest.importorskip("ultralytics")


@pytest.fixture(scope="module")
def yolo_files(tmp_path_factory) -> Path:
    """yolov8n.yaml (ultralytics' own), a checkpoint written by YOLO.save and the same weights
    as a state dict, and two pictures."""
    folder = tmp_path_factory.mktemp("yolo")
    source = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8.yaml"
    shutil.copy(source, folder / "yolov8n.yaml")  # the scale letter comes from the name
    torch.manual_seed(0)
    model = ultralytics.YOLO(str(folder / "yolov8n.yaml"))
    model.model.half().float()  # the checkpoint is stored in half precision: same weights
    model.save(str(folder / "yolo.pt"))
    torch.save(model.model.state_dict(), folder / "weights.pt")
    rng = np.random.default_rng(0)
    (folder / "pictures").mkdir()
    for name in ("a", "b"):
        pixels = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "pictures" / f"{name}.png")
    return folder


def explain(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["explain", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_checkpoint_is_a_pickle_refused_without_trust(yolo_files, tmp_path, capsys) -> None:
    code, lines = explain(
        capsys,
        str(yolo_files / "pictures"),
        "--model",
        str(yolo_files / "yolo.pt"),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2
    assert len(lines) == 1
    assert "an ultralytics checkpoint, a pickle that runs code" in lines[0]
    assert "--trust-model" in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_hostile_checkpoint_naming_ultralytics_runs_nothing_untrusted(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Payload(), "note": "ultralytics"}, tmp_path / "evil.pt")
    with zipfile.ZipFile(tmp_path / "evil.pt") as archive:
        assert any(b"ultralytics" in archive.read(n) for n in archive.namelist())
    picture = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(picture)
    code, lines = explain(
        capsys, str(picture), "--model", str(tmp_path / "evil.pt"), "--out", str(tmp_path / "o")
    )
    assert code == 2
    assert "--trust-model" in lines[0]
    assert not marker.exists()


def test_a_trusted_checkpoint_and_the_yaml_with_its_weights_give_the_same_maps(
    yolo_files, tmp_path, capsys
) -> None:
    pictures = str(yolo_files / "pictures")
    quick = ["--methods", "gradcam,eigencam", "--save-maps", "npy"]
    code, _ = explain(
        capsys,
        pictures,
        "--model",
        str(yolo_files / "yolo.pt"),
        "--trust-model",
        "--out",
        str(tmp_path / "checkpoint"),
        *quick,
    )
    assert code == 0
    yaml, weights = str(yolo_files / "yolov8n.yaml"), str(yolo_files / "weights.pt")
    code, _ = explain(
        capsys,
        pictures,
        "--model",
        yaml,
        "--weights",
        weights,
        "--out",
        str(tmp_path / "yaml"),
        *quick,
    )
    assert code == 0
    summary = json.loads((tmp_path / "yaml" / "a.json").read_text())
    assert summary["layers"] == ["model.15", "model.18", "model.21"]
    assert summary["input_size"] == [640, 864]  # sides a multiple of the network's 32
    for method in ("gradcam", "eigencam"):
        one = np.load(tmp_path / "checkpoint" / f"a_{method}.npy")
        other = np.load(tmp_path / "yaml" / f"a_{method}.npy")
        np.testing.assert_allclose(one, other, atol=1e-5)
    # the command explains what the library explains: each image's top detection
    loaded = load_model(str(yolo_files / "yolov8n.yaml"), str(yolo_files / "weights.pt"))
    _, x = loaded.prepare(read_image(yolo_files / "pictures" / "a.png"))
    ours = camkit.GradCAM(loaded.model)(x[None], targets=camkit.TopDetections(1)).maps[0]
    np.testing.assert_allclose(
        np.load(tmp_path / "yaml" / "a_gradcam.npy"), ours.numpy(), atol=1e-5
    )


def test_the_yaml_refuses_what_it_cannot_load_in_one_line(yolo_files, tmp_path, capsys):
    pictures = str(yolo_files / "pictures")
    (tmp_path / "bad.yaml").write_text("nc: 3\n")
    cases = [
        (["--model", str(tmp_path / "bad.yaml")], "is not a YOLO model yaml"),
        (
            ["--model", str(yolo_files / "yolov8n.yaml"), "--weights", str(yolo_files / "yolo.pt")],
            "pass --trust-model",
        ),
        (
            ["--model", str(yolo_files / "yolov8n.yaml"), "--weights", "best.pt"],
            "give a state-dict file",
        ),
    ]
    for args, message in cases:
        code, lines = explain(capsys, pictures, *args, "--out", str(tmp_path / "o"))
        assert code == 2, lines
        assert len([line for line in lines if "error" in line]) == 1
        assert message in lines[-1]


@pytest.mark.slow
def test_an_unreadable_picture_beside_a_yolo_checkpoint_is_one_line_and_installs_nothing(
    yolo_files, tmp_path
) -> None:
    """Loading a YOLO checkpoint imports ultralytics, which replaces PIL's Image.open with one
    that runs pip for a HEIF plugin on any unreadable picture; camkit keeps PIL's own."""
    pictures = tmp_path / "pictures"
    shutil.copytree(yolo_files / "pictures", pictures)
    (pictures / "broken.png").write_bytes(b"not a picture")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "camkit",
            "explain",
            str(pictures),
            "--model",
            str(yolo_files / "yolo.pt"),
            "--trust-model",
            "--methods",
            "gradcam",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "broken.png" in result.stderr
    assert "pi-heif" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "o" / "a_gradcam.png").is_file()
