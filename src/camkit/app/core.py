"""What the app computes, as plain functions: the browser layer (`camkit.app.ui`) only wires
them to widgets, and the tests call them directly.

The maps are computed once per question (`explain_pictures`); opacity and colour map are applied
afterwards (`render`), so moving a slider never runs the model.

Examples:
    >>> from camkit.app.core import Question, explain_pictures, open_model, render, sample_pictures
    >>> model = open_model("shapes")
    >>> pictures = sample_pictures()[:1]
    >>> shown = explain_pictures(model, pictures, Question(methods=("gradcam", "cam")))
    >>> [caption for _, caption in render(shown, alpha=0.5, colormap="jet")]
    ['cross.png', 'cross.png · gradcam · cross', 'cross.png · cam · cross']
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from camkit.data import sample_images, sample_photos
from camkit.errors import CamkitWarning, first_line
from camkit.files import OutputFolder
from camkit.images import MAX_SIDE, ImageReadError, read_image
from camkit.jobs.outputs import ImageResult, top_predictions, write_image
from camkit.layers import candidates, choose_layer
from camkit.methods import METHODS, method_class
from camkit.methods.building import build, parse_method_options
from camkit.models import DEFAULT_MODEL, LoadedModel, load_model
from camkit.models.states import KeyMap
from camkit.overlay import check_colormap, overlay, to_pil
from camkit.plot import line_chart
from camkit.targets import Contrast, Targets, select_output

MAX_IMAGES = 8  # per question: the page shows every image with every method


@dataclasses.dataclass
class AppModel:
    """A model as the app holds it: the loaded model, its layers, and a warning to show."""

    loaded: LoadedModel
    device: str
    layers: list[tuple[str, tuple[int, ...]]]  # (name, output shape) of each explainable layer
    automatic: str  # the layer camkit chooses (comma-separated names for several)
    warning: str = ""
    methods: list[str] = dataclasses.field(default_factory=lambda: list(METHODS))  # that fit
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def classes(self) -> list[str]:
        """Class names (numbers as text for a model without names)."""
        if self.loaded.classes:
            return list(self.loaded.classes)
        count = self._class_count()
        return [str(i) for i in range(count)]

    def _class_count(self) -> int:
        with torch.no_grad():
            x = torch.rand(1, 3, 64, 64, device=self.device)
            return int(
                select_output(self.loaded.model(self.loaded.normalise(x[0])[None])).shape[-1]
            )


def open_model(
    name: str = DEFAULT_MODEL,
    weights: str | None = None,
    *,
    device: str = "cpu",
    trust: bool = False,
    prompts: Sequence[str] = (),
    seed: int = 0,
    map_keys: KeyMap | None = None,
) -> AppModel:
    """Load a model for the app: a bundled one, a torchvision classifier by name (with a
    state-dict file, or random weights with a warning), a torch.export file (`trust`), or an
    image-text model (CLIP) with its text `prompts` as classes. The methods that fit it are
    listed in `AppModel.methods`: the attention methods only for a transformer.

    Raises `ValueError` with a one-line reason for a model or file that does not fit.

    Examples:
        >>> model = open_model("shapes")
        >>> model.automatic, model.warning
        ('features', '')
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CamkitWarning)
        # A model that cannot load raises ModelError, a ValueError: the page shows its line.
        loaded = load_model(name, weights, trust, prompts, seed, map_keys)
    said = [str(w.message) for w in caught if issubclass(w.category, CamkitWarning)]
    if loaded.random_weights:  # said for the page, which has an upload box, not flags
        said = [w for w in said if "random weights" not in w]
        said.insert(
            0,
            f"{loaded.name} has random weights (drawn from seed {seed}): its maps "
            "show no learned evidence; upload a weights file for trained ones",
        )
    warning = " ".join(said)
    model = loaded.model.to(device).eval()
    probe = torch.rand(3, loaded.size or 96, loaded.size or 96)
    x = loaded.normalise(probe)[None].to(device)
    found = candidates(model, x)
    automatic = ",".join(choose_layer(model, x).names)  # several: a detection head's scales
    layers = [(c.name, c.shape) for c in found]
    methods = [name for name, cls in METHODS.items() if cls.fits(model, x) is None]
    return AppModel(loaded, device, layers, automatic, warning, methods=methods)


def _chosen_layer(model: AppModel, question: Question) -> list[str] | None:
    """The layers the page asks for; None for the automatic choice, which each method makes
    its own way (the attention methods read every block), as the command without --layer."""
    if not question.layer or question.layer == model.automatic:
        return None
    return question.layer.split(",")


def layer_choices(model: AppModel) -> list[tuple[str, str]]:
    """(label, layer name) for a dropdown: the name and output shape, the automatic choice
    marked and first.

    Examples:
        >>> layer_choices(open_model("shapes"))[0]
        ('features  (1, 128, 12, 12)  ← automatic', 'features')
    """
    shapes = dict(model.layers)
    first = [
        (f"{model.automatic}  {shapes.get(model.automatic, '')}  ← automatic", model.automatic)
    ]
    others = [
        (f"{name}  {shape}", name)
        for name, shape in reversed(model.layers)
        if name != model.automatic
    ]
    return first + others


@dataclasses.dataclass(frozen=True)
class Question:
    """What to explain: the methods, the layer (None: automatic; each method takes it as its
    `layer_means` says), the target and the methods' own options.

    target: "top" (each image's prediction), "class" (`cls` for every image) or "contrast"
    (why `cls` rather than `foil`: the difference of their scores).
    """

    methods: tuple[str, ...] = ("gradcam",)
    layer: str | None = None
    target: str = "top"
    cls: int | None = None
    foil: int | None = None
    options: tuple[str, ...] = ()  # each method's own options, METHOD.NAME=VALUE (as the command)

    def targets(self) -> Targets:
        """The targets this question asks for (None: each image's prediction)."""
        if self.target == "top":
            return None
        if self.cls is None:
            raise ValueError("choose the class to explain")
        if self.target == "class":
            return self.cls
        if self.target == "contrast":
            if self.foil is None or self.foil == self.cls:
                raise ValueError("'A rather than B' needs two different classes")
            return Contrast(self.cls, self.foil)
        raise ValueError(f"unknown target kind {self.target!r}: top, class or contrast")


@dataclasses.dataclass
class Shown:
    """One image's results: the picture, the model input, the top-5 and one map per method.

    maps: method -> (H, W) map in [0, 1] at the picture's size; errors: method -> reason, for
    methods that do not fit the model; target: what the maps explain, in words; target_class:
    the class the faithfulness curves follow (A for "A rather than B").
    """

    name: str
    picture: Tensor
    input: Tensor
    predictions: list[dict[str, Any]]
    maps: dict[str, Tensor]
    raw: dict[str, Tensor]
    target: str
    target_class: int | None
    errors: dict[str, str]
    layers: list[str] = dataclasses.field(default_factory=list)  # the first method's
    score: float | None = None  # the model's score of what the maps explain


def sample_pictures() -> list[tuple[str, Tensor]]:
    """(file name, picture) of each bundled sample: the shapes, then the two photos."""
    return [(path.name, read_image(path)) for path in [*sample_images(), *sample_photos()]]


def read_upload(path: str | Path) -> tuple[str, Tensor]:
    """(file name, picture) of an uploaded file; a `ValueError` that says why for a file that is
    not a readable image (or is too large to decode safely); scaled down to `MAX_SIDE`."""
    try:
        return Path(path).name, read_image(Path(path), MAX_SIDE)
    except ImageReadError as error:
        raise ValueError(f"{Path(path).name}: {error}") from None


class Superseded(Exception):
    """A newer question of the same session replaced this one: its work stops at the next
    method, and its answer is never shown."""


Wanted = Callable[[], bool]
"""Whether the question being answered is still the session's latest."""


def _still(wanted: Wanted | None) -> None:
    if wanted is not None and not wanted():
        raise Superseded


def explain_pictures(
    model: AppModel,
    pictures: Sequence[tuple[str, Tensor]],
    question: Question,
    wanted: Wanted | None = None,
) -> list[Shown]:
    """Explain each picture with each method of the question.

    A method that does not fit the model is reported in `Shown.errors`, not raised: the others
    are still shown. A question that cannot be asked at all (no method, too many images, an
    unknown class) is a `ValueError`. Once `wanted()` is False (a newer question came), the
    work stops before the next method with `Superseded`.
    """
    if not pictures:
        raise ValueError("choose a sample or upload an image")
    if len(pictures) > MAX_IMAGES:
        raise ValueError(f"{len(pictures)} images: at most {MAX_IMAGES} at once")
    if not question.methods:
        raise ValueError(f"choose methods from: {', '.join(METHODS)}")
    for method in question.methods:
        method_class(method)
    options = parse_method_options(question.options)
    targets = question.targets()
    classes = model.loaded.classes
    results = []
    for name, picture in zip(
        distinct_names([n for n, _ in pictures]), (p for _, p in pictures), strict=True
    ):
        shown_picture, x = model.loaded.prepare(picture)
        x = x[None].to(model.device)
        logits = _logits(model, x, name)
        predictions = top_predictions(
            logits, model.loaded.class_name, probabilities=model.loaded.probabilities
        )
        shown = Shown(name, shown_picture, x[0], predictions, {}, {}, "", None, {})
        for method in question.methods:
            _still(wanted)
            try:
                with model.lock, warnings.catch_warnings():
                    warnings.simplefilter("ignore", CamkitWarning)
                    layer = _chosen_layer(model, question)
                    explainer = build(method, model.loaded.model, layer, options)
                    result = explainer(x, targets)
            except (ValueError, TypeError, RuntimeError, IndexError) as error:
                shown.errors[method] = first_line(error)
                continue
            shown.maps[method] = result.maps[0, 0].detach().cpu()
            shown.raw[method] = result.raw[0][0, 0].detach().cpu()
            if not shown.layers:
                shown.layers, shown.score = list(result.layers), float(result.scores[0, 0])
        # The class whose probability the deletion and insertion curves follow: A of "A
        # rather than B", the chosen class, or the prediction.
        top = shown.predictions[0]["class"]
        shown.target_class = question.cls if question.target != "top" else top
        shown.target = _target_words(question, shown, classes)
        results.append(shown)
    return results


def distinct_names(names: Sequence[str]) -> list[str]:
    """The names, made distinct by their stems (the downloads are named by stem): a name whose
    stem came before is numbered (``cross.png``, ``cross-2.png``), so two uploads of one file
    name, or an upload named like a sample, keep their own files and captions.

    Examples:
        >>> distinct_names(["cross.png", "disc.png", "cross.png", "cross-2.png", "cross.jpg"])
        ['cross.png', 'disc.png', 'cross-3.png', 'cross-2.png', 'cross-4.jpg']
    """
    given = {Path(name).stem for name in names}
    seen: set[str] = set()
    result = []
    for name in names:
        path, unique, number = Path(name), name, 2
        while Path(unique).stem in seen or (unique != name and Path(unique).stem in given):
            unique = f"{path.stem}-{number}{path.suffix}"
            number += 1
        seen.add(Path(unique).stem)
        result.append(unique)
    return result


def _logits(model: AppModel, x: Tensor, name: str) -> Tensor:
    """The model's scores for one picture; a picture the model cannot take (smaller than its
    smallest input, say) is a `ValueError` that names the picture and its size."""
    try:
        with torch.no_grad():
            return select_output(model.loaded.model(x))[0]
    except (RuntimeError, ValueError, IndexError) as error:
        height, width = x.shape[-2:]
        raise ValueError(
            f"{name} is {width} x {height} pixels: too small for this model, or not a shape it "
            f"takes (it failed: {first_line(error)}); use a larger image"
        ) from None


def _target_words(question: Question, shown: Shown, classes: Sequence[str] | None) -> str:
    def named(index: int | None) -> str:
        if index is None:
            return "?"
        return classes[index] if classes and index < len(classes) else str(index)

    if question.target == "contrast":
        return f"{named(question.cls)} rather than {named(question.foil)}"
    if question.target == "class":
        return named(question.cls)
    return named(shown.predictions[0]["class"])


def render(
    shown: Sequence[Shown], *, alpha: float = 0.5, colormap: str = "jet"
) -> list[tuple[Image.Image, str]]:
    """(image, caption) for each picture followed by its overlays: cheap, no model call."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"opacity {alpha}: must be from 0 to 1")
    check_colormap(colormap)
    tiles = []
    for item in shown:
        tiles.append((to_pil(item.picture), item.name))
        for method, heat in item.maps.items():
            picture = overlay(item.picture, heat, colormap, alpha)
            tiles.append((picture, f"{item.name} · {method} · {item.target}"))
    return tiles


@dataclasses.dataclass
class Faithfulness:
    """Deletion and insertion curves of each method's map on one image, and their AUCs."""

    fractions: list[float]
    deletion: dict[str, list[float]]
    insertion: dict[str, list[float]]

    def aucs(self) -> dict[str, tuple[float, float]]:
        """method -> (deletion AUC, lower is better; insertion AUC, higher is better)."""
        from camkit.metrics import auc

        return {
            m: (float(auc(torch.tensor(d))), float(auc(torch.tensor(self.insertion[m]))))
            for m, d in self.deletion.items()
        }

    def table(self) -> str:
        """The AUCs as a Markdown table."""
        lines = ["| method | deletion AUC ↓ | insertion AUC ↑ |", "|---|---:|---:|"]
        lines += [f"| {m} | {d:.3f} | {i:.3f} |" for m, (d, i) in self.aucs().items()]
        return "\n".join(lines)

    def chart(self) -> Image.Image:
        """Both curves of every method, one chart."""
        series = {f"{m} deletion": c for m, c in self.deletion.items()}
        series |= {f"{m} insertion": c for m, c in self.insertion.items()}
        return line_chart(
            series,
            self.fractions,
            title="Deletion and insertion",
            xlabel="share of pixels deleted / inserted",
            ylabel="probability of the class",
        )


def faithfulness(
    model: AppModel, shown: Shown, steps: int = 16, wanted: Wanted | None = None
) -> Faithfulness:
    """Deletion and insertion (RISE) of each map on the shown image, with `camkit.metrics`:
    the probability of the explained class as its most relevant pixels go (or come back).
    Stops with `Superseded` once `wanted()` is False."""
    from camkit.metrics import deletion, insertion

    x = shown.input[None]
    target = shown.target_class
    deleted, inserted = {}, {}
    # Without the model's lock: the curves never hold up an answer (a forward pass is safe
    # beside another; the lock keeps the explainers' warning filters apart), and they stop at
    # their next curve once a newer question comes.
    for method, heat in shown.maps.items():
        maps = heat[None, None].to(x.device)
        _still(wanted)
        d = deletion(model.loaded.model, x, maps, target, steps=steps)
        _still(wanted)
        i = insertion(model.loaded.model, x, maps, target, steps=steps)
        deleted[method] = d.scores[0].tolist()
        inserted[method] = i.scores[0].tolist()
    return Faithfulness([s / steps for s in range(steps + 1)], deleted, inserted)


def export(
    shown: Sequence[Shown], folder: Path, model_name: str, *, alpha: float, colormap: str
) -> list[Path]:
    """The files `camkit explain --save-maps npy` writes for each image (overlays, grid, raw and
    upsampled maps, JSON summary), written by the same code; returns the files."""
    out = OutputFolder(folder)
    files: list[Path] = []
    for item in shown:  # names made distinct by `explain_pictures`
        result = ImageResult(
            image=item.name,
            stem=Path(item.name).stem,
            picture=item.picture,
            maps={m: heat[None] for m, heat in item.maps.items()},
            raw={m: [item.raw[m][None]] for m in item.maps},
            layers=item.layers,
            targets=[{"class": item.target_class, "name": item.target, "score": item.score}],
            predictions=item.predictions,
            errors=item.errors,
        )
        names = write_image(
            result, out, model_name, colormap=colormap, alpha=alpha, save_maps="npy"
        )
        files += [folder / name for name in names]
    return files
