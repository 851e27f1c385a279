"""The page of `camkit app`, built with Gradio: widgets wired to `camkit.app.core`.

Each browser session keeps its own results in a `gr.State` (the maps, the files to download);
opacity and colour map re-render those results without running the model. Models are loaded
once per app and shared by the sessions (at most a few, the oldest dropped first); Gradio's
queue runs at most two jobs at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from camkit.app import core
from camkit.methods import METHODS
from camkit.models import BUNDLED_MODELS, DEFAULT_MODEL
from camkit.models import in_order as in_order_keys

RANDOM = "random weights"
MAX_SESSIONS = 64  # sessions whose files are kept at once (each: one answer's files)
TARGETS = {"top prediction": "top", "a class": "class", "A rather than B": "contrast"}


def _colormaps() -> list[str]:
    """The built-in colour maps, and a few of matplotlib's when it is installed."""
    try:
        import matplotlib
    except ImportError:
        return ["jet", "hot", "gray"]
    extra = [n for n in ("viridis", "inferno", "magma", "turbo") if n in matplotlib.colormaps]
    return ["jet", "hot", "gray", *extra]


def _torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


ModelKey = tuple[str, str, str]
"""A model as the app keeps it: (name, weights file or "", text prompts one per line or "")."""

SESSION_HOURS = 1.0
"""A session's results and files are deleted this long after its last answer (Gradio's
`time_to_live`), or when the app stops, whichever comes first."""


@dataclasses.dataclass
class Session:
    """One browser session's results and files: the files of its latest answer only, in a
    folder of their own under the session's (made when first needed), all removed when the
    session ends.

    Questions are numbered as they come (`ask`): an answer is shown only while its question is
    the latest, so two answers in flight (a change's re-explain and a click) never share or
    delete each other's files, and the newer one wins.
    """

    folder: Path
    model: ModelKey = (DEFAULT_MODEL, "", "")
    shown: list[core.Shown] = dataclasses.field(default_factory=list)
    uploads: list[str] = dataclasses.field(default_factory=list)
    asked: int = 0  # questions asked so far
    answered: int = 0  # the question whose answer is shown
    answer: Path | None = None  # the shown answer's files
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def ask(self) -> core.Wanted:
        """Number a new question; returns whether it is still the latest."""
        with self.lock:
            self.asked += 1
            number = self.asked
        return lambda: self.asked == number

    def latest(self) -> core.Wanted:
        """Whether the question now shown is still the latest (for work on its answer)."""
        number = self.asked
        return lambda: self.asked == number

    def show(self, shown: list[core.Shown], files: Path, wanted: core.Wanted) -> None:
        """Make `shown` and its `files` the session's answer, if its question is still the
        latest; the files of the answer it replaces go. A superseded answer's files go."""
        with self.lock:
            if not wanted():
                shutil.rmtree(files, ignore_errors=True)
                raise core.Superseded
            replaced, self.answer, self.shown = self.answer, files, shown
            self.answered = self.asked
        if replaced is not None and replaced != files:
            shutil.rmtree(replaced, ignore_errors=True)

    def clear(self) -> None:
        """Delete the session's files: its answer's downloads and its uploads."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for path in self.uploads:
            Path(path).unlink(missing_ok=True)
        self.uploads.clear()


class App:
    """The app's shared part: the models, loaded once (at most `keep`), and the start model."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        weights: str | None = None,
        *,
        device: str = "cpu",
        trust: bool = False,
        keep: int = 3,
        prompts: Sequence[str] = (),
        seed: int = 0,
        in_order: bool = False,
    ) -> None:
        self.device, self.trust, self.keep, self.seed = device, trust, keep, seed
        self.map_keys = in_order_keys if in_order else None  # --weights-in-order
        self.start: ModelKey = (model, weights or "", "\n".join(prompts))
        self.models: OrderedDict[ModelKey, core.AppModel] = OrderedDict()
        self.lock = threading.Lock()
        self.explained = 0  # questions answered with the model (the tests count them)
        self.sessions: OrderedDict[Path, Session] = OrderedDict()
        self.jobs = 0  # handlers running now
        self.idle = threading.Condition()
        self.model(self.start)  # a wrong --model fails now, before the server starts
        # Every session's files live under this folder, which `close` removes; made only once
        # the model has loaded, so a failed start leaves nothing behind.
        self.folder = Path(tempfile.mkdtemp(prefix="camkit-app-"))

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Counts a running handler, so that stopping can wait for the model's work to end."""
        with self.idle:
            self.jobs += 1
        try:
            yield
        finally:
            with self.idle:
                self.jobs -= 1
                self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no handler runs (True), or `timeout` seconds (False)."""
        with self.idle:
            return self.idle.wait_for(lambda: self.jobs == 0, timeout)

    def session(self) -> Session:
        """A new session, in a folder of its own; beyond `MAX_SESSIONS` the oldest one's files
        are deleted (its page then asks again), so the disk holds a bounded amount."""
        with self.lock:
            folder = self.folder / secrets.token_hex(8)
            session = Session(folder, model=self.start)
            self.sessions[folder] = session
            while len(self.sessions) > MAX_SESSIONS:
                _, oldest = self.sessions.popitem(last=False)
                oldest.clear()
            return session

    def end(self, session: Session | None) -> None:
        """A session ended (its page closed long enough, or its time ran out): its files go."""
        if session is not None:
            with self.lock:
                self.sessions.pop(session.folder, None)
            session.clear()

    def close(self) -> None:
        """Delete every session's files (the app stops)."""
        with self.lock:
            for session in self.sessions.values():
                session.clear()
            self.sessions.clear()
            shutil.rmtree(self.folder, ignore_errors=True)

    def model(self, key: ModelKey) -> core.AppModel:
        """The model loaded for `key` (name, weights file, prompts), loaded once and kept."""
        with self.lock:
            if key not in self.models:
                name, weights, prompts = key
                self.models[key] = core.open_model(
                    name,
                    weights or None,
                    device=self.device,
                    trust=self.trust,
                    prompts=[p.strip() for p in prompts.splitlines() if p.strip()],
                    seed=self.seed,
                    map_keys=self.map_keys,
                )
                while len(self.models) > self.keep:
                    self.models.popitem(last=False)
            self.models.move_to_end(key)
            return self.models[key]


def _digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:16]


def _busy(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Count the handler as running work of the app while it runs (see `App.wait_idle`)."""

    @functools.wraps(handler)
    def run(self: Handlers, *args: Any) -> Any:
        with self.app.working():
            return handler(self, *args)

    return run


class Handlers:
    """What each event of the page does, for one `App`: plain methods on plain values (the
    Gradio updates they return are the only UI in them)."""

    def __init__(self, app: App) -> None:
        self.app = app
        # The bundled samples, decoded once: every question reuses them.
        self.samples = dict(core.sample_pictures())

    def choose_model(
        self,
        state: Session | None,
        name: str,
        weights: str | None,
        prompts: str = "",
        methods: Sequence[str] = (),
    ) -> tuple[Any, ...]:
        """Load the chosen model (with its prompts, for an image-text model): its layers,
        classes and the methods that fit it fill the dropdowns."""
        state = state or self.app.session()
        key = (name, weights or "", (prompts or "").strip())
        if weights:
            state.uploads.append(weights)
        elif name == self.app.start[0] and not key[2]:
            key = self.app.start
        try:
            model = self.app.model(key)
        except ValueError as error:
            keep = gr.update()
            return state, f"**Cannot use this model:** {error}", keep, keep, keep, keep
        state.model = key
        note = f"⚠️ {model.warning}" if model.warning else ""
        if weights:
            note += f" Weights: {Path(weights).name} (sha256 {_digest(weights)})."
        classes = model.classes
        kept = [m for m in methods or ("gradcam", "gradcam++") if m in model.methods]
        return (
            state,
            note,
            gr.update(choices=core.layer_choices(model), value=model.automatic),
            gr.update(choices=classes, value=classes[0]),
            gr.update(choices=classes, value=classes[min(1, len(classes) - 1)]),
            gr.update(choices=model.methods, value=kept or model.methods[:1]),
        )

    @_busy
    def answer(
        self,
        state: Session | None,
        samples: list[str],
        uploads: list[str] | None,
        layer: str | None,
        methods: list[str],
        kind: str,
        a: str | None,
        b: str | None,
        alpha: float,
        colormap: str,
        options: str = "",
    ) -> tuple[Any, ...]:
        """Explain the chosen images: overlays, the top-5 and the files to download (and clear
        the curves, which `curves` computes next). `options`: the methods' own options, one
        METHOD.NAME=VALUE per line or semicolon, as the command's --method-option."""
        state = state or self.app.session()
        wanted = state.ask()
        unread: list[str] = []
        try:
            model = self.app.model(state.model)
            classes = model.classes
            question = core.Question(
                methods=tuple(methods or ()),
                layer=layer or None,
                target=TARGETS[kind],
                cls=classes.index(a) if a in classes else None,
                foil=classes.index(b) if b in classes else None,
                options=tuple(
                    o.strip() for o in options.replace(";", "\n").splitlines() if o.strip()
                ),
            )
            pictures = self._pictures(state, samples, uploads, unread)
            shown = core.explain_pictures(model, pictures, question, wanted)
            self.app.explained += 1
            tiles, files = self._rendered(state, shown, alpha, colormap, wanted)
        except core.Superseded:  # a newer question's answer shows instead
            return tuple(gr.skip() for _ in range(7))
        except ValueError as error:
            if not wanted():
                return tuple(gr.skip() for _ in range(7))
            state.shown = []
            reasons = "; ".join([*unread, str(error)])
            return state, f"**Error:** {reasons}", [], None, None, None, ""
        top = {p["name"]: p["probability"] for p in shown[0].predictions}
        message = _problems(shown, unread)
        # The curves of the previous answer go; `curves` draws this answer's next.
        return state, message, tiles, top, files, None, ""

    @_busy
    def curves(self, state: Session | None) -> tuple[Any, ...]:
        """Deletion and insertion of each map on the first image (after the overlays show)."""
        if state is None or not state.shown or not state.shown[0].maps:
            return None, ""
        if state.answered != state.asked:  # a newer question's curves follow its answer
            return gr.skip(), gr.skip()
        wanted = state.latest()
        try:
            faithful = core.faithfulness(self.app.model(state.model), state.shown[0], wanted=wanted)
        except core.Superseded:  # a newer question's curves come with its answer
            return gr.skip(), gr.skip()
        return faithful.chart(), faithful.table()

    def restyle(self, state: Session | None, alpha: float, colormap: str) -> tuple[Any, ...]:
        """New opacity or colour map: the same maps, drawn again (the model is not run)."""
        if state is None or not state.shown:
            return gr.update(), gr.update()
        try:
            return self._rendered(state, state.shown, alpha, colormap, state.latest())
        except core.Superseded:
            return gr.skip(), gr.skip()

    def _pictures(
        self, state: Session, samples: list[str], uploads: list[str] | None, unread: list[str]
    ) -> list[Any]:
        """The chosen samples and the uploads that read; each upload that does not is named
        in `unread`, and the others are still explained."""
        found = [(n, self.samples[n]) for n in samples if n in self.samples]
        for path in uploads or []:
            state.uploads.append(path)
            try:
                found.append(core.read_upload(path))
            except ValueError as error:
                unread.append(str(error))
        if not found and unread:
            raise ValueError("no image could be read")
        return found

    def _rendered(
        self,
        state: Session,
        shown: list[core.Shown],
        alpha: float,
        colormap: str,
        wanted: core.Wanted,
    ) -> tuple[list[Any], list[str]]:
        """The tiles and downloads of `shown`, in a folder of their own, made the session's
        answer if its question is still the latest."""
        tiles = core.render(shown, alpha=alpha, colormap=colormap)
        state.folder.mkdir(parents=True, exist_ok=True)
        folder = state.folder / secrets.token_hex(6)
        name = self.app.model(state.model).loaded.name
        files = core.export(shown, folder, name, alpha=alpha, colormap=colormap)
        state.show(shown, folder, wanted)
        return tiles, [str(p) for p in files]


@dataclasses.dataclass
class _Page:
    """The page's widgets: the question on the left, the answer on the right."""

    session: Any = None
    samples: Any = None
    uploads: Any = None
    model: Any = None
    weights: Any = None
    prompts: Any = None
    model_note: Any = None
    layer: Any = None
    methods: Any = None
    target: Any = None
    cls: Any = None
    foil: Any = None
    options: Any = None
    explain: Any = None
    status: Any = None
    gallery: Any = None
    alpha: Any = None
    colormap: Any = None
    predictions: Any = None
    curves: Any = None
    aucs: Any = None
    downloads: Any = None


def _question(page: _Page, samples: list[str], model_names: list[str]) -> None:
    """The left column: images, model, layer, methods, target."""
    page.samples = gr.CheckboxGroup(
        samples, value=samples[:1], label="Bundled samples", elem_id="samples"
    )
    page.uploads = gr.File(
        file_count="multiple",
        file_types=["image"],
        label="Upload or drop images",
        elem_id="uploads",
    )
    # Explain and what went wrong stay where the user clicks, in view at the top of the page.
    page.explain = gr.Button("Explain", variant="primary", elem_id="explain")
    page.status = gr.Markdown("", elem_id="status")
    page.model = gr.Dropdown(
        model_names, value=model_names[0], label="Model", elem_id="model", allow_custom_value=True
    )
    page.prompts = gr.Textbox(
        label="Text prompts, one per line (an image-text model: a CLIP folder or "
        "open_clip:ARCH); each is a class",
        lines=2,
        elem_id="prompts",
    )
    page.weights = gr.File(
        label="Weights (state dict or checkpoint; none: the model's own or random)",
        file_types=[".pt", ".pth", ".bin", ".ckpt"],
        elem_id="weights",
    )
    page.model_note = gr.Markdown("", elem_id="model-note")
    page.layer = gr.Dropdown([], label="Layer", elem_id="layer")
    page.methods = gr.CheckboxGroup(
        list(METHODS), value=["gradcam", "gradcam++"], label="Methods", elem_id="methods"
    )
    page.options = gr.Textbox(
        "",
        label="Method options (METHOD.NAME=VALUE, e.g. scorecam.channels=32)",
        elem_id="method-options",
    )
    page.target = gr.Radio(list(TARGETS), value="top prediction", label="Target", elem_id="target")
    with gr.Row():  # shown for the targets that take them
        page.cls = gr.Dropdown([], label="Class (A)", elem_id="class", visible=False)
        page.foil = gr.Dropdown([], label="Rather than (B)", elem_id="foil", visible=False)


def _problems(shown: list[core.Shown], unread: list[str]) -> str:
    """The answer's message: uploads that could not be read, methods that did not fit."""
    methods = [f"{s.name} · {m}: {e}" for s in shown for m, e in s.errors.items()]
    parts = [f"**Not read:** {'; '.join(unread)}"] if unread else []
    parts += [f"**Method errors:** {'; '.join(methods)}"] if methods else []
    return "; ".join(parts)


def _classes_for(kind: str) -> tuple[Any, Any]:
    """Class A shows for "a class" and "A rather than B", class B for the latter only."""
    return gr.update(visible=kind != "top prediction"), gr.update(visible=kind == "A rather than B")


def _answer(page: _Page) -> None:
    """The right column: overlays, styling, top-5, curves, downloads."""
    page.gallery = gr.Gallery(
        label="Image and overlays", columns=3, format="png", elem_id="gallery"
    )
    with gr.Row():
        page.alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity", elem_id="alpha")
        page.colormap = gr.Dropdown(
            _colormaps(), value="jet", label="Colour map", elem_id="colormap"
        )
    page.predictions = gr.Label(
        num_top_classes=5, label="Top-5 (click one to explain it)", elem_id="predictions"
    )
    page.curves = gr.Image(
        label="Deletion and insertion (first image)", format="png", elem_id="curves"
    )
    page.aucs = gr.Markdown("", elem_id="aucs")
    page.downloads = gr.File(
        label="Downloads: overlays, grid, maps (.npy), summary (JSON)",
        file_count="multiple",
        elem_id="downloads",
    )


def _wire(blocks: gr.Blocks, page: _Page, handlers: Handlers) -> None:
    """What each widget does: a new question runs the model, a new style only re-renders."""
    question = [
        page.session,
        page.samples,
        page.uploads,
        page.layer,
        page.methods,
        page.target,
        page.cls,
        page.foil,
        page.alpha,
        page.colormap,
        page.options,
    ]
    answered = [
        page.session,
        page.status,
        page.gallery,
        page.predictions,
        page.downloads,
        page.curves,
        page.aucs,
    ]
    chosen = [page.session, page.model_note, page.layer, page.cls, page.foil, page.methods]
    model = [page.session, page.model, page.weights, page.prompts, page.methods]

    def ask(event: Any) -> None:
        event(handlers.answer, question, answered).then(
            handlers.curves, page.session, [page.curves, page.aucs]
        )

    blocks.load(handlers.choose_model, model, chosen)
    for trigger in (page.model.input, page.weights.upload, page.prompts.blur):
        ask(trigger(handlers.choose_model, model, chosen).then)
    ask(page.explain.click)
    for widget in (page.layer, page.methods, page.target, page.cls, page.foil):
        ask(widget.input)
    ask(page.options.submit)
    page.target.change(_classes_for, page.target, [page.cls, page.foil])
    for style in (page.alpha, page.colormap):
        style.change(
            handlers.restyle,
            [page.session, page.alpha, page.colormap],
            [page.gallery, page.downloads],
        )
    ask(page.predictions.select(_picked, None, [page.target, page.cls]).then)


def build(app: App) -> Any:  # a gradio.Blocks (gradio has no type hints)
    """The page, wired to `app`."""
    handlers = Handlers(app)
    start = app.start[0]
    model_names = [start, *(n for n in [*BUNDLED_MODELS, *_torchvision_names()] if n != start)]
    page = _Page()
    with gr.Blocks(title="camkit", delete_cache=(600, 3600)) as blocks:
        page.session = gr.State(None, time_to_live=SESSION_HOURS * 3600, delete_callback=app.end)
        gr.Markdown(
            "# camkit · class activation maps\nChoose images, a model, a layer, methods "
            "and a target, then **Explain**."
        )
        with gr.Row():
            with gr.Column(scale=1):
                _question(page, list(handlers.samples), model_names)
            with gr.Column(scale=2):
                _answer(page)
        _wire(blocks, page, handlers)
    blocks.queue(default_concurrency_limit=2, max_size=32)
    return blocks


def _picked(event: gr.SelectData) -> tuple[Any, ...]:
    """A click on a prediction: explain that class."""
    return gr.update(value="a class"), gr.update(value=event.value)
