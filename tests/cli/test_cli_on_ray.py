"""`--ray`: both commands on a local Ray cluster give the files and figures of a local run."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from camkit.cli import main
from camkit.data import sample_images
from camkit.files import LEDGER, read_ledger

ray = pytest.importorskip("ray", reason="Ray is the optional extra camkit[ray]")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of 2 CPUs for the module: the commands join it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture
def one_thread():
    """The local run with one CPU thread, as each CPU actor of Ray has: oneDNN's convolutions
    sum in an order that depends on the thread count, so equal bytes need equal counts (with
    other counts the figures agree to float32 rounding, about 1e-7)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _files(folder: Path) -> dict[str, bytes]:
    """Every output's bytes; the ledger as the set of names it holds (actors append to it in
    the order they finish)."""
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != LEDGER}
    return files | {LEDGER: repr(sorted(read_ledger(folder))).encode()}


def test_explain_on_ray_writes_the_same_bytes_as_a_local_run(
    cluster, one_thread, tmp_path, capsys
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in sample_images():
        shutil.copy(path, inputs / path.name)
    (inputs / "broken.png").write_bytes(b"not a picture")
    # SmoothGrad-CAM++ draws noise: equal files need the same seeding in every process.
    common = [
        "explain",
        str(inputs),
        "--methods",
        "gradcam,smoothgradcam++",
        "--batch-size",
        "2",
        "--save-maps",
        "npy",
    ]
    here = main([*common, "--out", str(tmp_path / "here"), "--workers", "0"])
    said_here = capsys.readouterr()
    there = main([*common, "--out", str(tmp_path / "ray"), "--ray", "--ray-workers", "2"])
    said_there = capsys.readouterr()
    assert here == there == 1  # the broken file fails both, one line each
    errors = [line for line in said_there.err.splitlines() if line.startswith("camkit: error")]
    assert len(errors) == 1
    assert f"{inputs / 'broken.png'}: " in errors[0]
    assert errors == [line for line in said_here.err.splitlines() if line.startswith("camkit: e")]
    assert said_here.out.replace("here", "ray") == said_there.out
    local, remote = _files(tmp_path / "here"), _files(tmp_path / "ray")
    assert len(local) == 6 * (2 + 2 + 2 + 2) + 1
    assert local.keys() == remote.keys()
    summaries = [n for n in local if n.endswith(".json")]
    for name in local:
        if name in summaries:  # they name the input file, the same in both runs
            assert json.loads(local[name]) == json.loads(remote[name]), name
        else:
            assert local[name] == remote[name], name


def test_evaluate_on_ray_merges_to_the_figures_of_a_local_run(
    cluster, one_thread, tmp_path, capsys
) -> None:
    # finercam with an option: the option must reach the actors for the figures to agree.
    common = [
        "evaluate",
        "--limit",
        "10",
        "--batch-size",
        "3",
        "--steps",
        "4",
        "--sanity-images",
        "4",
        "--methods",
        "gradcam,smoothgradcam++,finercam",
        "--method-options",
        "finercam.compare=1",
        "finercam.alpha=1.0",
    ]
    assert main([*common, "--out", str(tmp_path / "here"), "--workers", "0"]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray"]) == 0
    capsys.readouterr()
    local, remote = (
        json.loads((tmp_path / d / "results.json").read_text()) for d in ("here", "ray")
    )
    for method, row in local["rows"].items():
        del row["Explain s"], remote["rows"][method]["Explain s"]  # timings
    assert local["rows"] == remote["rows"]
    assert local["curves"] == remote["curves"]
    assert local["details"] == remote["details"]
    assert local["tables"] == remote["tables"]
    assert remote["info"]["images"] == 10
    for method in ("gradcam", "smoothgradcam++"):
        assert remote["info"]["passes"][method]["backward"] == 4  # one per chunk of 3
    assert remote["info"]["passes"]["clean"] == local["info"]["passes"]["clean"]


def test_ray_options_are_checked_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    out = str(tmp_path / "o")
    assert main(["explain", "--out", out, "--ray-workers", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "camkit: error: --ray-workers is for runs on Ray: add --ray [ADDRESS]"
    )
    assert main(["explain", "--out", out, "--ray", "--ray-workers", "0"]) == 2
    assert "--ray-workers 0: must be at least 1 (actors)" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    assert main(["evaluate", "--limit", "2", "--out", out, "--ray"]) == 2
    assert "Ray is not installed: pip install 'camkit[ray]'" in capsys.readouterr().err
