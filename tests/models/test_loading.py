"""Loading models offline: published weights that cannot be downloaded are one line at once,
cached ones load without the network, and random weights are the same on every run."""

from __future__ import annotations

import time
import urllib.error

import pytest
import torch
import torchvision

import camkit
from camkit.cli import main
from camkit.errors import ModelError
from camkit.models import load_model, loading


def _unreachable(address, timeout=None):
    raise OSError(-2, "Name or service not known")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No server answers, and torch's cache is an empty folder of the test's."""
    monkeypatch.setattr(loading.socket, "create_connection", _unreachable)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_published_weights_offline_are_one_line_at_once(offline, tmp_path, capsys) -> None:
    started = time.perf_counter()
    code = main(
        ["explain", "--model", "resnet18", "--weights", "DEFAULT", "--out", str(tmp_path / "o")]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert time.perf_counter() - started < 10
    assert len(lines) == 1
    assert (
        "--weights IMAGENET1K_V1: resnet18's published weights are not on this machine"
        in (lines[0])
    )
    assert "cannot be downloaded from https://download.pytorch.org/" in lines[0]
    assert "--weights FILE" in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_download_cut_off_is_one_line_too(monkeypatch, tmp_path) -> None:
    def cut(*args, **kwargs):
        raise urllib.error.URLError("Connection reset by peer")

    monkeypatch.setattr(loading.socket, "create_connection", lambda *a, **k: _Closed())
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", cut)
    with pytest.raises(ModelError, match=r"cannot be downloaded .*Connection reset by peer"):
        load_model("resnet18", "IMAGENET1K_V1")


class _Closed:
    def close(self) -> None:
        pass


def test_cached_published_weights_load_without_the_network(offline) -> None:
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    offline.mkdir(parents=True)
    torch.manual_seed(5)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, offline / weights.url.rsplit("/", 1)[-1])
    loaded = load_model("resnet18", "DEFAULT")
    torch.testing.assert_close(loaded.model.fc.weight, state["fc.weight"])
    assert not loaded.random_weights


def test_random_weights_are_seeded_and_leave_the_callers_stream_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with pytest.warns(camkit.CamkitWarning, match=r"random weights, drawn from a fixed seed"):
        first = load_model("resnet18")
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched
    with pytest.warns(camkit.CamkitWarning):
        again = load_model("resnet18")
    with pytest.warns(camkit.CamkitWarning):
        other = load_model("resnet18", seed=1)
    assert first.random_weights
    assert torch.equal(first.model.fc.weight, again.model.fc.weight)
    assert not torch.equal(first.model.fc.weight, other.model.fc.weight)
    picture = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert first.model(picture).argmax() == again.model(picture).argmax()


@pytest.mark.slow
def test_an_open_clip_tag_offline_is_one_line_at_once(offline, capsys) -> None:
    """open_clip fetches a pretrained tag from the Hugging Face hub, which retries for about a
    minute and logs each failure; offline, the cache alone is asked and one line says why."""
    pytest.importorskip("open_clip")
    started = time.perf_counter()
    with pytest.raises(ModelError) as refused:
        load_model("open_clip:ViT-B-32", "laion2b_s34b_b79k", prompts=["a dog"])
    assert time.perf_counter() - started < 30
    assert "not in the Hugging Face cache on this machine, and huggingface.co cannot be" in str(
        refused.value
    )
    assert "--weights FILE" in str(refused.value)
    assert capsys.readouterr().err == ""  # the libraries' own log lines are not shown
