"""Explaining image files to files: `explain_folder`, the job behind `camkit explain`.

Failures are per input and per method: each is one line naming both, and everything else is
written. Outputs are written to a temporary name and renamed, so an interrupted run leaves
only complete files; a name camkit did not write is never replaced (`camkit.files`).

Examples:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result = explain_folder(ExplainJob(out=Path(out), methods=("gradcam",)))
    >>> result.inputs, result.written, result.failures
    (6, 18, 0)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor

from camkit.data import sample_images, sample_photos
from camkit.errors import CamkitWarning, UsageError
from camkit.explanation import Explanation
from camkit.files import OutputError, OutputFolder, identity, shown
from camkit.images import IMAGE_SUFFIXES
from camkit.jobs.cost import WORTH_SAYING, estimate
from camkit.jobs.fields import Label
from camkit.jobs.options import ExplainJob
from camkit.jobs.outputs import listed_files
from camkit.jobs.progress import Collected, JobInterrupted, Progress
from camkit.jobs.work import ImageFiles, Item, failure_message, write_item
from camkit.methods import Explainer, method_class
from camkit.methods.building import build, parse_method_options
from camkit.models import LoadedModel
from camkit.stream import Unreadable, explain_batches
from camkit.targets import TopK, select_output

IMAGENET_CLASSES = 1000
"""ImageNet-1k's class count: a model with as many classes explains the bundled photos."""


@dataclasses.dataclass
class ExplainResult:
    """What `explain_folder` did: inputs (all of them, those done before included), files
    written, failures (each told to the `Progress`), inputs complete from an earlier run
    (`skip_existing`), files camkit wrote earlier that were left out of the inputs.

    Examples:
        >>> ExplainResult(inputs=5, done_before=2).notes()
        ' (2 complete already, skipped)'
    """

    inputs: int
    written: int = 0
    failures: int = 0
    done_before: int = 0
    left_out: int = 0
    done: int = 0

    def notes(self) -> str:
        """What a closing line adds: skipped inputs, outputs left out of the inputs."""
        notes = [f"{self.done_before} complete already, skipped"] if self.done_before else []
        if self.left_out:
            notes.append(f"{self.left_out} files camkit wrote there left out of the inputs")
        return f" ({'; '.join(notes)})" if notes else ""


def _inputs(given: Sequence[str], own: set[Path]) -> tuple[list[Path], Path, int]:
    """The inputs: each file given, and the images under each folder given (recursively, in
    sorted order) except the outputs camkit wrote there (`own`: a folder can be its own output
    folder); the folder their output names are relative to; and how many outputs were left
    out. Anything else than a regular file is reported when read, never opened."""
    found: dict[Path, Path] = {}  # by identity: a file given twice once
    left_out = 0
    for text in given:
        path = Path(text)
        # Missing, unreadable or special files given by name are reported when read.
        images = (
            [path]
            if not path.is_dir()
            else [
                p
                for p in sorted(path.rglob("*"))
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
            ]
        )
        for image in images:
            key = identity(image)
            if path.is_dir() and key in own:
                left_out += 1
            else:
                found.setdefault(key, image)
    folders = [
        os.path.abspath(t if Path(t).is_dir() else os.path.dirname(os.path.abspath(t)))
        for t in given
    ]
    root = Path(os.path.commonpath(folders)) if folders else Path.cwd()
    return list(found.values()), root, left_out


def output_stems(paths: Sequence[Path], root: Path) -> list[str | None]:
    """Each input's output stem: its path below `root` without the suffix (``"a/img"`` for
    ``root/a/img.png``), so that a name never depends on which other inputs exist. Inputs of
    one folder that share a stem (``img.png``, ``img.jpg``) keep their suffix (``"a/img.png"``).
    None: a stem that is still taken (``img.png`` and ``img.jpg`` beside ``img.png.jpg``):
    reported, not used.

    Examples:
        >>> output_stems([Path("/d/a/img.png"), Path("/d/b/img.png"), Path("/d/x.png")], Path("/d"))
        ['a/img', 'b/img', 'x']
        >>> output_stems([Path("/d/img.png"), Path("/d/img.jpg")], Path("/d"))
        ['img.png', 'img.jpg']
    """
    below = [Path(os.path.relpath(os.path.abspath(p), root)).as_posix() for p in paths]
    plain = [str(PurePosixPath(b).with_suffix("")) for b in below]
    shared = {stem for stem in plain if plain.count(stem) > 1}
    stems = [b if stem in shared else stem for b, stem in zip(below, plain, strict=True)]
    return [stem if stems.count(stem) == 1 else None for stem in stems]


def complete(out: Path, stem: str, path: Path, methods: Sequence[str]) -> bool:
    """Whether a run already wrote everything for the input `path` at `stem`: its JSON summary
    (written last) names this image and the same methods, and every file it lists exists."""
    summary_path = out / f"{stem}.json"
    if not summary_path.is_file():  # missing, or a pipe or device that would block a read
        return False
    try:
        summary = json.loads(summary_path.read_text())
        listed = listed_files(summary)
        same_image = os.path.abspath(summary["image"]) == os.path.abspath(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    plain = all(
        isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..") for n in listed
    )
    return (
        plain
        and same_image
        and summary.get("methods") == list(methods)
        and all((summary_path.parent / n).is_file() for n in listed)
    )


@dataclasses.dataclass
class Plan:
    """What a run writes: every input, its output stem (None: refused, its names are another
    input's), the inputs to explain now, and the outputs of camkit left out of the inputs."""

    folder: OutputFolder
    paths: list[Path]
    stems: list[str | None]
    todo: list[int]
    left_out: int

    @property
    def done_before(self) -> int:
        """Inputs complete from an earlier run (`skip_existing`)."""
        return sum(stem is not None for stem in self.stems) - len(self.todo)

    def refused(self) -> list[Path]:
        """The inputs whose output names another input has."""
        return [path for path, stem in zip(self.paths, self.stems, strict=True) if stem is None]


def plan(
    job: ExplainJob, methods: Sequence[str], label: Label = str, samples: Sequence[Path] = ()
) -> Plan:
    """The inputs and their outputs in the job's folder (made now), before any work; no input
    given: `samples`, else the bundled shape samples."""
    out = job.folder
    try:
        folder = OutputFolder(out)
    except OutputError as error:
        raise UsageError(f"{label('out')} {shown(out)}: {error}") from None
    if job.inputs:
        own = {identity(folder.path(name)) for name in folder.owned}
        paths, root, left_out = _inputs(job.inputs, own)
    else:
        paths, left_out = list(samples or sample_images()), 0
        root = paths[0].parent
    stems = output_stems(paths, root)
    folder.inputs = {identity(p) for p in paths}  # never written over, whatever the ledger says
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"{label('out')} {shown(out)}: cannot create it ({error.strerror})"
        ) from None
    todo = [i for i, stem in enumerate(stems) if stem is not None]
    if job.skip_existing:
        todo = [i for i in todo if not complete(out, str(stems[i]), paths[i], methods)]
    return Plan(folder, paths, stems, todo, left_out)


def prepared_model(job: ExplainJob) -> LoadedModel:
    """The job's model on its device, with the preprocessing the job sets (size, mean, std)."""
    loaded = job.load()
    if job.size is not None:
        loaded.size = job.size or None
    if job.mean is not None or job.std is not None:
        loaded.mean, loaded.std = tuple(job.mean or (0.0,) * 3), tuple(job.std or (1.0,) * 3)
    return loaded


def targets_of(job: ExplainJob, loaded: LoadedModel, label: Label = str) -> int | TopK | None:
    """The target or top choice, checked against the model's classes where they are known."""
    count = len(loaded.classes) if loaded.classes else None
    if job.top is not None:
        if count is not None and job.top > count:
            raise UsageError(f"{label('top')} {job.top}: the model has only {count} classes")
        return TopK(job.top)
    if job.target is None:
        return TopK(len(job.prompt)) if job.prompt else None
    if job.target.isdigit():
        index = int(job.target)
        if count is not None and index >= count:
            raise UsageError(
                f"unknown target class {index}: the model has {count} classes, 0 to {count - 1}"
            )
        return index
    if loaded.classes and job.target in loaded.classes:
        return list(loaded.classes).index(job.target)
    if not loaded.classes:
        raise UsageError(
            f"unknown target class {shown(job.target)!r}: the model names no "
            "classes, so --target takes a class index"
        )
    if len(loaded.classes) <= 12:  # a short list is said whole
        valid = ", ".join(loaded.classes)
        raise UsageError(f"unknown target class {shown(job.target)!r}; valid: {valid}")
    close = closest_classes(job.target, loaded.classes)
    hint = f"closest: {', '.join(repr(c) for c in close)}; " if close else ""
    raise UsageError(
        f"unknown target class {shown(job.target)!r}; {hint}`camkit classes --model "
        f"{loaded.name}` lists all {len(loaded.classes)}"
    )


def closest_classes(asked: str, classes: Sequence[str], most: int = 6) -> list[str]:
    """The class names a user who typed `asked` may mean: those with `asked` as a word (any
    case), then the closest spellings.

    Examples:
        >>> closest_classes("cat", ["tabby", "tiger cat", "Persian cat", "catamaran", "cab"])
        ['tiger cat', 'Persian cat', 'cab']
    """
    word = re.compile(rf"\b{re.escape(asked.strip())}\b", re.IGNORECASE)
    found = [c for c in classes if word.search(c)]
    spelled = difflib.get_close_matches(asked, list(classes), n=most, cutoff=0.6)
    return list(dict.fromkeys([*found, *spelled]))[:most]


def _before_work(
    job: ExplainJob,
    loaded: LoadedModel,
    data: ImageFiles,
    explainers: dict[str, Explainer],
    targets: int | TopK | None,
    layer: list[str] | None,
    progress: Progress,
    label: Label,
) -> None:
    """With the first readable input: the classes asked for exist (a model without names), and
    a long job says what it will cost."""
    first = next(
        (
            item
            for item in map(data.__getitem__, range(len(data)))
            if not isinstance(item, Unreadable)
        ),
        None,
    )
    if first is None:
        return
    x = first["input"].to(job.device)
    if loaded.classes is None and targets is not None:
        _check_target_range(loaded.model, x[None], targets, label)
    try:
        said = "" if loaded.random_weights else flat_prediction(loaded, x, first["path"])
        cost = estimate(loaded.model, explainers, x, len(data), layer, job.images_per_batch)
    except (RuntimeError, ValueError):  # the model fails on this input: explaining it says why
        return
    if said:
        warnings.warn(said, CamkitWarning, stacklevel=2)
    if cost.seconds > WORTH_SAYING:
        progress.note(cost.line())


FLAT = 0.05
"""A trained classifier of many classes (`FLAT_CLASSES` or more) whose most likely class is
less likely than this on a picture is told its preprocessing may be wrong: on eight real photos
the ImageNet model's top probability was 0.09 to 0.95 when preprocessed as its configuration
says, 0.01 to 0.05 with pictures scaled up too far (docs/howto/pretrained.md has the table)."""
FLAT_CLASSES = 100


def flat_prediction(loaded: LoadedModel, x: Tensor, path: Path) -> str:
    """A warning when the model's prediction for input `x` is implausibly flat, else ""."""
    with torch.inference_mode():
        scores = select_output(loaded.model(x[None]))
    if scores.dim() != 2 or scores.shape[-1] < FLAT_CLASSES:
        return ""
    top = float(loaded.probabilities(scores.float())[0].max())
    if top >= FLAT:
        return ""
    crop = f", keeps the centre {loaded.crop:.3g} of it" if loaded.crop else ""
    mean = "no normalisation" if loaded.mean is None else f"mean {loaded.mean}, std {loaded.std}"
    return (
        f"{shown(path)}: the model's most likely class has a probability of {top:.3f} among "
        f"{scores.shape[-1]} classes, implausibly flat for a trained classifier: check the "
        f"preprocessing (this run resizes the shorter side to {loaded.size or 'as is'}{crop}, "
        f"{mean}); maps of a model that does not recognise its input show little"
    )


def _check_target_range(
    model: torch.nn.Module, x: Tensor, targets: int | TopK | None, label: Label
) -> None:
    """For a model without class names: the classes asked for exist (one forward of one input)."""
    if targets is None:
        return
    with torch.inference_mode():
        count = select_output(model(x[:1])).shape[-1]
    asked = targets.k if isinstance(targets, TopK) else targets + 1
    if asked > count:
        what = f"{label('top')} {asked}" if isinstance(targets, TopK) else f"target class {targets}"
        raise UsageError(f"{what}: the model has {count} classes (0 to {count - 1})")


@dataclasses.dataclass
class _Run:
    """One run's counts, shared by the writer threads."""

    result: ExplainResult
    progress: Progress
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def fail(self, line: str) -> None:
        with self.lock:
            self.result.failures += 1
        self.progress.fail(line)

    def failed(self, item: Item | Path, method: str, error: BaseException) -> None:
        self.fail(failure_message(item, method, error))
        if method == "read":
            self.advance()

    def advance(self, count: int = 1) -> None:
        with self.lock:
            self.result.done += count
        self.progress.advance(count)

    def wrote(self, count: int, problem: str) -> None:
        with self.lock:
            self.result.written += count
        if problem:
            self.fail(problem)
        self.advance()


def _explain_here(
    run: _Run,
    job: ExplainJob,
    loaded: LoadedModel,
    data: ImageFiles,
    explainers: dict[str, Explainer],
    targets: int | TopK | None,
    folder: OutputFolder,
) -> None:
    """Explain on this machine: read by reader processes, written by threads."""

    def write(item: Item, results: dict[str, tuple[Explanation, int]]) -> None:
        count, problem = 0, ""
        try:
            count, problem = write_item(item, results, loaded, folder, job)
        finally:  # counted as done even when writing raised
            run.wrote(count, problem)

    # Outputs are encoded and written by threads while the model works on the next batch; at
    # most two batches of inputs wait for them, so memory stays bounded.
    waiting = threading.BoundedSemaphore(2 * job.images_per_batch)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="camkit-write") as writers:
        stream = explain_batches(
            loaded.model,
            data,
            explainers,
            targets=targets,
            batch_size=job.images_per_batch,
            num_workers=job.workers,
            device=job.device,
            on_error=run.failed,
        )
        for batch in stream:
            for item, results in zip(batch.items, batch.results, strict=True):
                waiting.acquire()
                task = writers.submit(write, item, results)
                task.add_done_callback(lambda _task: waiting.release())


def default_methods(loaded: LoadedModel) -> tuple[str, ...]:
    """Grad-CAM and Grad-CAM++, CAM for the bundled shapes model (built for it), and LeGrad
    where it fits (a transformer: `Explainer.fits`)."""
    transformer = method_class("legrad").fits(loaded.model, loaded.example_input()) is None
    return (
        ("gradcam", "gradcam++")
        + (("cam",) if loaded.name == "shapes" else ())
        + (("legrad",) if transformer else ())
    )


def default_samples(loaded: LoadedModel) -> list[Path]:
    """What a job explains when given no input: the two bundled photos for a model of
    ImageNet's 1000 classes, else the bundled shape samples."""
    classes = loaded.classes
    return sample_photos() if classes is not None and len(classes) == IMAGENET_CLASSES else []


def explain_folder(
    job: ExplainJob, progress: Progress | None = None, label: Label = str
) -> ExplainResult:
    """Explain the job's inputs (files, folders; none: the bundled samples) into its output
    folder: per input an overlay per method and target, a grid and a JSON summary (and the
    maps with `save_maps`), locally or on Ray (`job.ray`).

    Raises `UsageError` before any work for a job that cannot run (`label` names its options in
    the message), and `JobInterrupted` on Ctrl-C, with what was finished. Failures of single
    inputs or methods are counted and told to `progress`: the others are still written.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as out:
        ...     result = explain_folder(ExplainJob(out=Path(out), methods=("cam",)))
        >>> result.inputs, result.failures
        (6, 0)
    """
    progress = progress or Collected()
    job.check(label)
    loaded = prepared_model(job)
    methods = job.methods or default_methods(loaded)
    layer = job.layers(loaded.model)
    targets = targets_of(job, loaded, label)
    options = parse_method_options(job.method_options)
    explainers = {m: build(m, loaded.model, layer, options) for m in methods}
    steps = plan(job, methods, label, default_samples(loaded))
    todo = [steps.paths[i] for i in steps.todo]
    data = ImageFiles(todo, [str(steps.stems[i]) for i in steps.todo], loaded, job.max_size)
    result = ExplainResult(len(steps.paths), done_before=steps.done_before, left_out=steps.left_out)
    run = _Run(result, progress)
    progress.start(len(steps.paths), steps.done_before)
    for path in steps.refused():
        run.failed(
            path,
            "read",
            ValueError("another input's outputs would have the same names: rename one of them"),
        )
    _before_work(job, loaded, data, explainers, targets, layer, progress, label)
    try:
        if job.ray is not None:
            from camkit.jobs.ray import explain_on_ray

            for count, errors in explain_on_ray(job, loaded, methods, layer, targets, data, label):
                run.wrote(count, "")
                for line in filter(None, errors.split("\n")):
                    run.fail(line)
        else:
            _explain_here(run, job, loaded, data, explainers, targets, steps.folder)
    except KeyboardInterrupt:
        raise JobInterrupted(result) from None
    return result
