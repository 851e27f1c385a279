"""`camkit app`: serves on 127.0.0.1, prints its address, stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from camkit.cli import main

pytest.importorskip("gradio", reason="the app is the optional extra camkit[app]")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_app_serves_locally_and_stops_on_ctrl_c() -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "camkit", "app", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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
