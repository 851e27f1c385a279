"""`camkit app`: serves on 127.0.0.1, prints its address, stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from camkit.cli import main
from helpers.processes import stoppable

pytest.importorskip("gradio", reason="the app is the optional extra camkit[app]")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_app_serves_locally_and_stops_on_ctrl_c() -> None:
    port = _free_port()
    server = stoppable(
        [sys.executable, "-m", "camkit", "app", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = server.stdout.readline()  # printed once the server listens
        assert line.strip() == f"camkit: the app is at http://127.0.0.1:{port}/ (Ctrl-C stops it)"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
            assert b"camkit" in response.read()
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == 0, err
    assert "camkit: app stopped" in out
    assert "Traceback" not in err
    started = time.perf_counter()
    with pytest.raises(OSError, match="refused|Connection"):  # nothing listens any more
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    assert time.perf_counter() - started < 5


def test_app_options_are_checked_before_serving(capsys) -> None:
    assert main(["app", "--port", "70000"]) == 2
    assert "--port 70000: at most 65535 (a TCP port)" in capsys.readouterr().err
    assert main(["app", "--model", "resnet5"]) == 2
    assert "unknown model 'resnet5'" in capsys.readouterr().err
    assert main(["app", "--layer", "features"]) == 2
    assert "chooses the layer in the page" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stopped_app_leaves_none_of_its_sessions_files(stop, tmp_path) -> None:
    """A service manager's stop (SIGTERM), a closed terminal (SIGHUP) and Ctrl-C all remove the
    app's folder: every session's overlays, maps and uploads."""
    port = _free_port()
    server = stoppable(
        [sys.executable, "-m", "camkit", "app", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        assert "the app is at" in server.stdout.readline()
        (folder,) = tmp_path.glob("camkit-app-*")
        answer = folder / "session" / "answer"
        answer.mkdir(parents=True)
        (answer / "photo_gradcam.png").write_bytes(b"a user's overlay")
        server.send_signal(getattr(signal, stop))
        out, err = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == 0, err
    assert "camkit: app stopped" in out
    assert "Traceback" not in err
    assert not list(tmp_path.glob("camkit-app-*"))


@pytest.mark.parametrize("weights", ["NOPE", "DEFAULT"])
def test_a_failed_start_is_one_line_and_leaves_no_folder(weights, tmp_path, monkeypatch, capsys):
    """--weights NOPE is not a weights name; DEFAULT needs a download this machine cannot make
    (it reaches no server but the package indexes, and the tests make sure of it)."""
    import tempfile

    from camkit.models import loading

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(loading.torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(loading, "DOWNLOAD_TIMEOUT", 2.0)
    monkeypatch.setattr(loading.socket, "create_connection", _unreachable)
    assert main(["app", "--model", "resnet18", "--weights", weights]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("camkit: error: --weights")
    assert not list(tmp_path.glob("camkit-app-*"))


def _unreachable(address, timeout=None):
    raise OSError(-2, "Name or service not known")
