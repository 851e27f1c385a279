"""`camkit app` in a real headless Chromium (Playwright): the page a user sees, clicked.

The app runs in this process (a server thread), so the tests can count the model work that a
click causes. Screenshots and the measured click-to-overlay times go to test-output/app/.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("gradio", reason="the app is the optional extra camkit[app]")
playwright = pytest.importorskip("playwright.sync_api")

from camkit.app import core  # noqa: E402
from camkit.app.ui import App, build  # noqa: E402
from camkit.data import ShapesDataset  # noqa: E402
from camkit.overlay import to_pil  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "app"


@pytest.fixture(scope="session")
def browser_type_launch_args():
    """pytest-playwright launches the system's Chromium (Playwright's download is unreachable)."""
    assert CHROMIUM.exists(), "install Chromium: apt-get install -y chromium (.ci/run does)"
    return {"executable_path": str(CHROMIUM)}


@pytest.fixture(scope="session")
def browser_context_args():
    return {"viewport": {"width": 1400, "height": 1500}, "accept_downloads": True}


@pytest.fixture(scope="module")
def served():
    """The app on a free port of 127.0.0.1, for the whole module."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = App()
    page = build(app)
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    yield f"http://127.0.0.1:{port}/", app
    assert app.wait_idle(120), "the app's handlers were still running"
    page.close()
    app.close()
    assert not app.folder.exists()  # no session's files outlive the app


def _record(name: str, seconds: float) -> None:
    path = OUTPUT / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[name] = round(seconds, 3)
    path.write_text(json.dumps(timings, indent=2) + "\n")


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#explain")
    # The page fills the layer and class lists on load; wait until the automatic layer is shown.
    page.wait_for_function(
        "document.querySelector('#layer input')?.value.includes('automatic')", timeout=30_000
    )


def _captions(page) -> list[str]:
    return [c.strip() for c in page.locator("#gallery .caption-label").all_inner_texts()]


def _explain_and_wait(page, images: int) -> float:
    """Click Explain; seconds until the gallery's answer is drawn (its busy state has come and
    gone and it shows `images` pictures)."""
    # An answer still in flight (a change that re-explains) must end first: its busy state would
    # be taken for this click's.
    page.wait_for_function(
        "document.querySelector('#gallery [data-testid=status-tracker]').classList"
        ".contains('hide')",
        timeout=60_000,
    )
    page.evaluate(
        """() => {
            const tracker = document.querySelector('#gallery [data-testid=status-tracker]');
            window.camkitBusy = false;
            window.camkitDone = false;
            new MutationObserver(() => {
                if (!tracker.classList.contains('hide')) window.camkitBusy = true;
                else if (window.camkitBusy) window.camkitDone = true;
            }).observe(tracker, {attributes: true});
        }"""
    )
    started = time.perf_counter()
    page.click("#explain")
    page.wait_for_function(
        f"window.camkitDone && document.querySelectorAll('#gallery img').length >= {images}",
        timeout=60_000,
        polling=20,
    )
    return time.perf_counter() - started


def _wait_for_captions(page, check, timeout: float = 60.0) -> list[str]:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        captions = _captions(page)
        if check(captions):
            return captions
        page.wait_for_timeout(100)
    raise AssertionError(f"the gallery never showed what was expected: {_captions(page)}")


def test_a_click_shows_overlays_top5_curves_and_downloads(served, page) -> None:
    url, app = served
    _open(page, url)
    seconds = _explain_and_wait(page, 3)
    _record("bundled model, click to first overlay (s)", seconds)
    assert _captions(page) == [
        "cross.png",
        "cross.png · gradcam · cross",
        "cross.png · gradcam++ · cross",
    ]
    top = page.inner_text("#predictions")
    assert "cross" in top
    assert "100%" in top
    page.wait_for_selector("#aucs table")
    rows = page.locator("#aucs tbody tr").all_inner_texts()
    assert [r.split()[0] for r in rows] == ["gradcam", "gradcam++"]
    for row in rows:  # deletion AUC below insertion AUC: the maps point at the evidence
        deletion, insertion = (float(v) for v in row.split()[1:])
        assert 0.0 <= deletion < insertion <= 1.0
    page.wait_for_selector("#curves img")
    listed = page.inner_text("#downloads")
    for name in ("cross_gradcam.png", "cross_gradcam.npy", "cross_gradcam_raw.npy", "cross.json"):
        stem, suffix = name.rsplit(".", 1)
        assert stem in listed
        assert f".{suffix}" in listed
    page.screenshot(path=str(OUTPUT / "explained.png"), full_page=True)
    assert app.explained >= 1


def test_opacity_and_colour_map_redraw_without_the_model(served, page, monkeypatch) -> None:
    url, _ = served
    _open(page, url)
    _explain_and_wait(page, 3)
    page.wait_for_selector("#aucs table", timeout=60_000)  # the answer's curves are done too
    calls = []

    def counted(name: str):
        real = getattr(core, name)

        def call(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return call

    for name in ("explain_pictures", "faithfulness"):
        monkeypatch.setattr(core, name, counted(name))
    first = page.locator("#gallery img").nth(1).get_attribute("src")
    slider = page.locator("#alpha input[type=number]")
    slider.fill("0.9")
    slider.press("Enter")
    page.wait_for_function(
        "(src) => document.querySelectorAll('#gallery img')[1]?.getAttribute('src') !== src",
        arg=first,
        timeout=30_000,
    )
    second = page.locator("#gallery img").nth(1).get_attribute("src")
    page.locator("#colormap input").click()
    page.get_by_role("option", name="hot").click()
    page.wait_for_function(
        "(src) => document.querySelectorAll('#gallery img')[1]?.getAttribute('src') !== src",
        arg=second,
        timeout=30_000,
    )
    assert calls == []  # redrawn from the session's maps: no explainer, no metric ran
    page.screenshot(path=str(OUTPUT / "restyled.png"), full_page=True)


def test_upload_change_method_and_target_then_download(served, page, tmp_path) -> None:
    url, _ = served
    picture = tmp_path / "my star.png"
    data = ShapesDataset(40, seed=3)
    star = next(i for i in range(40) if int(data[i]["label"]) == 3)  # class 3 is "star"
    to_pil(data[star]["image"]).save(picture)
    _open(page, url)
    page.locator("#samples label", has_text="cross.png").click()  # unchecks the sample
    page.locator("#uploads input[type=file]").set_input_files(str(picture))
    page.wait_for_selector("#uploads >> text=my star")
    _explain_and_wait(page, 3)
    assert _captions(page)[0] == "my star.png"
    page.locator("#methods label", has_text="scorecam").click()  # a change re-explains
    _wait_for_captions(page, lambda c: any("scorecam" in x for x in c))
    page.locator("#target label", has_text="a class").click()
    page.locator("#class input").click()
    page.get_by_role("option", name="ring", exact=True).click()
    captions = _wait_for_captions(page, lambda c: len(c) == 4 and c[1].endswith("· ring"))
    assert captions[1:] == [
        f"my star.png · {m} · ring" for m in ("gradcam", "gradcam++", "scorecam")
    ]
    page.locator("#target label", has_text="A rather than B").click()
    _wait_for_captions(page, lambda c: len(c) == 4 and c[1].endswith("ring rather than square"))
    with page.expect_download() as download_info:
        page.locator('#downloads a[download="my star.json"]').click()
    saved = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(saved)
    assert saved.name == "my star.json"
    summary = json.loads(saved.read_text())
    assert summary["methods"] == ["gradcam", "gradcam++", "scorecam"]
    assert summary["targets"][0]["name"] == "ring rather than square"
    page.wait_for_selector("#aucs table", timeout=60_000)
    page.wait_for_selector("#curves img", timeout=60_000)
    page.screenshot(path=str(OUTPUT / "uploaded.png"), full_page=True)


def _in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_a_bad_upload_is_said_where_the_user_clicked_and_the_rest_is_explained(
    served, page, tmp_path
) -> None:
    url, _ = served
    page.set_viewport_size({"width": 1400, "height": 1000})
    fake = tmp_path / "notes.png"
    fake.write_text("this is not a picture")
    _open(page, url)
    page.locator("#uploads input[type=file]").set_input_files(str(fake))
    page.wait_for_selector("#uploads >> text=notes")
    page.locator("#explain").scroll_into_view_if_needed()
    page.click("#explain")
    page.wait_for_selector("#status >> text=Not read")
    assert "notes.png: not a readable image" in page.inner_text("#status")
    assert _in_view(page, "#status")  # said beside the button just clicked
    captions = _wait_for_captions(page, lambda c: len(c) == 3)
    assert captions[0] == "cross.png"  # the checked sample is still explained
    page.screenshot(path=str(OUTPUT / "bad-upload.png"), full_page=True)
    page.locator("#samples label", has_text="cross.png").click()  # only the bad upload left
    page.click("#explain")
    page.wait_for_selector("#status >> text=Error")
    assert "no image could be read" in page.inner_text("#status")
    page.locator("#uploads button[aria-label='Clear']").first.click()
    page.locator("#samples label", has_text="cross.png").click()
    _explain_and_wait(page, 3)
    assert _captions(page)[0] == "cross.png"
    assert page.inner_text("#status").strip() == ""
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    page.locator("#weights input[type=file]").set_input_files(str(wrong))
    page.wait_for_selector("#model-note >> text=Cannot use this model")
    assert "does not fit the bundled model" in page.inner_text("#model-note")
    _explain_and_wait(page, 3)  # still serving, with the model it had
    assert _captions(page)[1] == "cross.png · gradcam · cross"


def test_two_sessions_each_get_their_own_results(served, browser) -> None:
    url, _ = served
    pages = [browser.new_page(viewport={"width": 1400, "height": 1500}) for _ in range(2)]
    try:
        for page, sample in zip(pages, ("disc.png", "ring.png"), strict=True):
            _open(page, url)
            page.locator("#samples label", has_text="cross.png").click()
            page.locator("#samples label", has_text=sample).click()
        for page in pages:  # both questions are in flight at once
            page.click("#explain")
        for page, sample in zip(pages, ("disc", "ring"), strict=True):
            captions = _wait_for_captions(page, lambda c: len(c) == 3)
            assert captions[0] == f"{sample}.png"
            assert all(sample in c for c in captions)
    finally:
        for page in pages:
            page.close()


def test_a_torchvision_model_with_random_weights_warns_and_explains(served, page) -> None:
    url, _ = served
    _open(page, url)
    page.locator("#model input").fill("resnet50")
    page.get_by_role("option", name="resnet50", exact=True).click()
    page.wait_for_selector("#model-note >> text=random weights")
    page.wait_for_function(
        "document.querySelector('#layer input')?.value.startsWith('layer4')", timeout=60_000
    )
    # The model change re-explains and draws the curves; time a fresh click once both are in.
    _wait_for_captions(page, lambda c: len(c) == 3)
    page.wait_for_selector("#aucs table", timeout=60_000)
    seconds = _explain_and_wait(page, 3)
    _record("resnet50 (224 px), click to first overlay (s)", seconds)
    assert _captions(page)[1].startswith("cross.png · gradcam · ")
    page.wait_for_selector("#aucs table", timeout=60_000)  # the curves of this answer
    page.screenshot(path=str(OUTPUT / "resnet50.png"), full_page=True)


def test_a_vision_transformer_lists_the_attention_methods(served, page) -> None:
    url, _ = served
    _open(page, url)
    assert page.locator("#methods label", has_text="legrad").count() == 0  # a CNN: not listed
    page.locator("#model input").fill("vit")
    page.get_by_role("option", name="vit", exact=True).click()
    page.wait_for_selector("#methods label >> text=legrad", timeout=60_000)
    page.wait_for_function(
        "document.querySelector('#layer input')?.value.startsWith('blocks.3')", timeout=60_000
    )
    _explain_and_wait(page, 3)  # after the model change's own answer: nothing in flight
    page.locator("#methods label", has_text="legrad").click()  # a change re-explains
    captions = _wait_for_captions(page, lambda c: any("legrad" in x for x in c))
    assert [c.split(" · ")[1] for c in captions[1:]] == ["gradcam", "gradcam++", "legrad"]
    page.screenshot(path=str(OUTPUT / "vit.png"), full_page=True)


def test_explain_is_in_view_and_the_class_boxes_show_for_their_targets(served, page) -> None:
    """At 1000 pixels high the Explain button is on screen as the page opens; "Class (A)"
    shows for "a class" and "A rather than B", "Rather than (B)" for the latter only."""
    url, _ = served
    page.set_viewport_size({"width": 1400, "height": 1000})
    _open(page, url)
    assert _in_view(page, "#explain")
    assert not page.locator("#class").is_visible()
    assert not page.locator("#foil").is_visible()
    page.locator("#target label", has_text="a class").click()
    page.wait_for_selector("#class", state="visible")
    assert not page.locator("#foil").is_visible()
    page.locator("#target label", has_text="A rather than B").click()
    page.wait_for_selector("#foil", state="visible")
    page.locator("#target label", has_text="top prediction").click()
    page.wait_for_selector("#class", state="hidden")
    page.screenshot(path=str(OUTPUT / "layout-1000.png"))


def test_a_newer_question_wins_and_the_older_is_dropped(served, page, monkeypatch) -> None:
    """A method change re-explains; a click on Explain while that answer is in flight asks
    again. The older answer stops at its next method, writes no files and is never shown; the
    newer one is, and its files are the session's only ones."""
    url, app = served
    calls: list[str] = []
    real = core.explain_pictures

    def slowly(model, pictures, question, wanted=None):
        calls.append("started")
        time.sleep(1.0)  # both answers are in flight at once
        try:
            return real(model, pictures, question, wanted)
        except core.Superseded:
            calls.append("superseded")
            raise

    monkeypatch.setattr(core, "explain_pictures", slowly)
    _open(page, url)
    page.locator("#methods label", has_text="layercam").click()  # a change: re-explains
    page.wait_for_timeout(300)
    page.click("#explain")  # asks again while that answer is in flight
    expected = [f"cross.png · {m} · cross" for m in ("gradcam", "gradcam++", "layercam")]
    captions = _wait_for_captions(page, lambda c: c[1:] == expected)
    assert captions[0] == "cross.png"
    page.wait_for_selector("#aucs table", timeout=60_000)
    assert app.wait_idle(60)
    assert calls.count("started") == 2
    assert calls.count("superseded") == 1
    session = list(app.sessions.values())[-1]  # this page's: the newest
    answers = [p for p in session.folder.iterdir() if p.is_dir()]
    assert answers == [session.answer]
    overlays = sorted(p.name for p in session.answer.iterdir() if p.suffix == ".png")
    assert overlays == [
        "cross_gradcam++.png",
        "cross_gradcam.png",
        "cross_grid.png",
        "cross_layercam.png",
    ]


def test_a_click_during_a_model_switch_is_not_held_up_by_the_switchs_answer(
    served, page, monkeypatch
) -> None:
    """Switching to resnet50 re-explains, then draws the curves (seconds on this model); a
    click in that window asks again: the switch's curves stop at their next method and the
    click's answer comes about as fast as a click on an idle app (times, measured in the
    server from the click to the answer's maps, in test-output/app/)."""
    url, app = served
    answered: list[float] = []
    superseded: list[str] = []
    real_explain, real_curves = core.explain_pictures, core.faithfulness

    def explained(*args, **kwargs):
        shown = real_explain(*args, **kwargs)
        answered.append(time.perf_counter())
        return shown

    def curves(*args, **kwargs):
        try:
            return real_curves(*args, **kwargs)
        except core.Superseded:
            superseded.append("curves")
            raise

    monkeypatch.setattr(core, "explain_pictures", explained)
    monkeypatch.setattr(core, "faithfulness", curves)
    _open(page, url)
    page.locator("#model input").fill("resnet50")
    page.get_by_role("option", name="resnet50", exact=True).click()
    while not answered:  # the switch's answer is in; its curves are being drawn
        page.wait_for_timeout(50)
    page.wait_for_timeout(500)

    def click_to_maps() -> float:
        """Seconds from a click on Explain to its answer's maps, measured in the server."""
        clicked, before = time.perf_counter(), len(answered)
        page.click("#explain")
        while len(answered) == before:
            page.wait_for_timeout(50)
        return answered[-1] - clicked

    during = click_to_maps()
    page.wait_for_selector("#aucs table", timeout=120_000)
    assert app.wait_idle(120)
    idle = click_to_maps()
    page.wait_for_selector("#aucs table", timeout=120_000)
    _record("resnet50 (224 px), click while the switch's curves are drawn, to its maps (s)", during)
    _record("resnet50 (224 px), click on an idle app, to its maps (s)", idle)
    assert superseded == ["curves"]
    assert during < 2 * idle + 3, (during, idle)  # before: 9.4 s against 1.0 s here
