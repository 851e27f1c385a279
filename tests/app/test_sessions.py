"""The app's handlers without a browser (issue 21): what a session keeps and for how long,
downloads that never collide, and a clear message for an image the model cannot take."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from camkit.app import ui  # Gradio: the app's extra, a test dependency


@pytest.fixture
def app():
    app = ui.App()
    yield app
    app.close()


def ask(handlers: ui.Handlers, state, samples=(), uploads=(), methods=("gradcam",)) -> tuple:
    return handlers.answer(
        state,
        list(samples),
        list(uploads),
        None,
        list(methods),
        "top prediction",
        None,
        None,
        0.5,
        "jet",
    )


def files_under(folder) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_one_pixel_image_says_what_is_wrong(app, tmp_path) -> None:
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    _, message, tiles, *_ = ask(ui.Handlers(app), None, uploads=[str(tmp_path / "dot.png")])
    assert message.startswith("**Error:** dot.png is 1 x 1 pixels: too small for this model")
    assert tiles == []


def test_two_images_of_one_name_keep_their_own_downloads(app, tmp_path) -> None:
    handlers = ui.Handlers(app)
    uploads = []
    for folder, seed in (("a", 1), ("b", 2)):  # cross.png from two folders, and the sample
        (tmp_path / folder).mkdir()
        pixels = (np.random.default_rng(seed).random((64, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / folder / "cross.png")
        uploads.append(str(tmp_path / folder / "cross.png"))
    _, message, tiles, _, downloads, *_ = ask(
        handlers, None, ["cross.png"], uploads, methods=("gradcam", "cam")
    )
    assert message == ""
    names = sorted(p.rsplit("/", 1)[1] for p in downloads)
    per_image = 2 * 3 + 2  # per method: overlay, map, raw map; the grid and the summary
    assert len(downloads) == len(set(names)) == 3 * per_image, names
    assert {"cross.json", "cross-2.json", "cross-3.json"} <= set(names)
    captions = [caption for _, caption in tiles]
    assert captions[:1] == ["cross.png"]
    assert "cross-2.png" in captions
    assert "cross-3.png" in captions


def test_sessions_keep_one_answer_each_and_go_when_they_end(app, monkeypatch) -> None:
    monkeypatch.setattr(ui, "MAX_SESSIONS", 3)
    handlers = ui.Handlers(app)
    sessions = []
    for _ in range(5):
        state = ask(handlers, None, ["cross.png"])[0]
        state = ask(handlers, state, ["disc.png", "star.png"])[0]  # replaces the first answer
        sessions.append(state)
        assert files_under(state.folder)
        assert not (state.folder / "cross.json").exists()
    folders = sorted(p.name for p in app.folder.iterdir())
    assert folders == sorted(s.folder.name for s in sessions[-3:])  # the oldest two were dropped
    # One answer of two images each (overlay, map, raw map, grid, summary) and camkit's ledger.
    assert len(files_under(app.folder)) == 3 * (2 * 5 + 1)
    app.end(sessions[-1])  # the session's time ran out, or its page closed
    assert not sessions[-1].folder.exists()
    app.close()  # the app stops: nothing of any session is left
    assert not app.folder.exists()
