"""Evaluating methods on a dataset into a report folder: `evaluate_dataset`, the job behind
`camkit evaluate`.

Examples:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result = evaluate_dataset(EvaluateJob(out=Path(out), methods=("cam",), limit=4,
    ...                                           metrics=("drop",), workers=0))
    >>> result.report.info["images"], result.files[:1]
    (4, ['results.md'])
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image
from torch import Tensor, nn

from camkit.errors import CamkitWarning, UsageError, first_line
from camkit.evaluation import (
    METRICS,
    Batch,
    BatchResult,
    Evaluation,
    Report,
    Settings,
    default_metrics,
    needing_masks,
    plots_of,
)
from camkit.evaluation.datasets import (
    MASK_SUFFIX,
    FolderImages,
    Items,
    benchmark,
    first_readable,
    folder_dataset,
    to_batch,
)
from camkit.files import OutputError, OutputFolder, shown
from camkit.images import MAX_SIDE
from camkit.jobs.cost import duration, evaluation_cost
from camkit.jobs.fields import Label
from camkit.jobs.options import BENCHMARKS, DEFAULT_IMAGES, DEFAULT_METHODS, EvaluateJob
from camkit.jobs.progress import Collected, JobInterrupted, Progress
from camkit.methods import METHODS, method_class
from camkit.methods.building import MethodSettings, build, parse_method_options
from camkit.models import LoadedModel
from camkit.stream import read_chunks
from camkit.targets import select_output

REPORT_FILES = ("results.md", "results.csv", "results.json")


@dataclasses.dataclass
class EvaluateResult:
    """What `evaluate_dataset` did: the report (None: no method could run), the files it
    wrote in the job's folder, and the failures told to the `Progress`.

    Examples:
        >>> EvaluateResult(report=None).files  # no method could run
        []
    """

    report: Report | None
    files: list[str] = dataclasses.field(default_factory=list)
    failures: int = 0
    images: int = 0
    total: int = 0  # the images of the dataset


def report_names(metrics: Sequence[str] | None = None) -> list[str]:
    """The files a report of these metrics (default: every metric) may write: the tables and
    each declared plot.

    Examples:
        >>> report_names(["deletion"])
        ['results.md', 'results.csv', 'results.json', 'deletion.png']
    """
    named = list(METRICS) if metrics is None else metrics
    return [*REPORT_FILES, *(f"{plot.name}.png" for plot in plots_of(named))]


def _check_free(out: Path, label: Label) -> None:
    """Before any work: the report's names in `out` are free, or camkit's own."""
    try:
        taken = OutputFolder(out).taken(report_names())
    except OutputError as error:
        raise UsageError(f"{label('out')} {shown(out)}: {error}") from None
    if taken:
        raise UsageError(
            f"{label('out')} {shown(out)}: {', '.join(taken)} there were not written by camkit "
            "and are not replaced: move them, or choose another output folder"
        )


def dataset(job: EvaluateJob, loaded: LoadedModel, label: Label = str) -> tuple[Items, int]:
    """The images to evaluate, as a dataset of (input, label, mask) items, and the highest
    label."""
    if job.data in BENCHMARKS:
        from camkit.data import CLASSES

        count = job.limit if job.limit is not None else DEFAULT_IMAGES
        side = job.size or 96
        job.check_side(side, label)
        return benchmark(job.data, count, side), len(CLASSES) - 1
    if not Path(job.data).is_dir():
        raise UsageError(
            f"{label('data')} {shown(job.data)!r}: use 'shapes', 'shortcut' or 'hard' (bundled) "
            "or a folder of class subfolders"
        )
    items = folder_dataset(Path(job.data), loaded)[: job.limit]
    shorter = job.size or loaded.size or min(first_readable(items, MAX_SIDE).shape[1:])
    side = round(shorter * (loaded.crop or 1.0))  # the model's crop of the resized picture
    job.check_side(side, label)
    return FolderImages(items, side, loaded), max(cls for _, cls in items)


def _fill(text: str, inputs: Tensor) -> float | Tensor:
    """'mean' (per channel, of the first batch: RISE's choice) or a number."""
    return inputs.mean(dim=(0, 2, 3)) if text == "mean" else float(text)


def _applicable(
    methods: Sequence[str],
    model: nn.Module,
    layer: list[str] | None,
    options: MethodSettings,
    first: Batch,
    fail: Callable[[str], None],
) -> list[str]:
    """The methods that fit this model (`Explainer.fits`) and work on it, tried on two images
    (one would let a batch-size mismatch pass as broadcasting); the others are reported."""
    usable = []
    for method in methods:
        reason = method_class(method).fits(model, first.inputs[:1])
        if reason is not None:
            fail(f"{method}: {reason}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CamkitWarning)  # the real run warns
                build(method, model, layer, options)(first.inputs[:2], first.labels[:2])
        except (ValueError, TypeError, RuntimeError) as error:
            fail(f"{method}: {first_line(error)}")
        else:
            usable.append(method)
    return usable


def _warn_left_out(left_out: list[str], model: str) -> None:
    """The default set: what does not fit this kind of model is no failure, only said."""
    if left_out:
        names = ", ".join(line.partition(":")[0] for line in left_out)
        warnings.warn(
            f"left out, as they do not fit {model}: {names} (name one with "
            "--methods to see why; the report lists the reasons)",
            CamkitWarning,
            stacklevel=3,
        )


def metrics_for(job: EvaluateJob, data: Items) -> list[str]:
    """The metrics to run: those chosen, or the default ones that the data allows (the mask
    ones when at least one image has a mask). Chosen mask metrics with no mask at all are left
    out with a warning that says why."""
    masked = needing_masks()
    if job.metrics is None:
        return [m for m in default_metrics() if data.masked or m not in masked]
    missing = [m for m in job.metrics if m in masked]
    if missing and not data.masked:
        warnings.warn(
            f"{', '.join(missing)}: no image of {shown(job.data)} has an object mask (<image "
            f"stem>{MASK_SUFFIX} beside the image), so these columns are left out",
            CamkitWarning,
            stacklevel=2,
        )
    return list(job.metrics)


def _first_batch(data: Items, job: EvaluateJob) -> tuple[int, Batch] | None:
    """The first readable chunk, read here (its unreadable images are reported when the
    workers read them)."""
    size = job.images_per_batch
    for position in range(0, len(data), size):
        chunk = [data[i] for i in range(position, min(len(data), position + size))]
        batch = to_batch(chunk, job.device, lambda _: None)
        if batch is not None:
            return position, batch
    return None


def _batches(
    data: Items, job: EvaluateJob, fail: Callable[[str], None]
) -> Iterator[tuple[int, Batch]]:
    """(position, batch) for chunks of a batch, read by the job's reader processes while the
    model works on the previous batch."""
    size = job.images_per_batch
    for number, chunk in enumerate(read_chunks(data, size, job.workers)):
        batch = to_batch(chunk, job.device, fail)
        if batch is not None:
            yield number * size, batch


def _results(
    job: EvaluateJob,
    data: Items,
    evaluation: Evaluation,
    first: tuple[int, Batch],
    rest: Iterator[tuple[int, Batch]],
    counted: _Counted,
    label: Label,
) -> Iterator[BatchResult]:
    """Each batch's measurements, in dataset order: measured here (progress told method by
    method), or by Ray's actors (batch by batch)."""
    if job.ray is not None:
        from camkit.jobs.ray import evaluate_on_ray

        for measured in evaluate_on_ray(job, data, evaluation, counted.fail, label):
            counted.progress.advance(measured.images)
            yield measured
    else:
        for position, batch in itertools.chain([first], rest):
            yield evaluation.measure(batch, position, counted.progress.advance)


def _save_png(picture: Image.Image, handle: BinaryIO) -> None:
    picture.save(handle, format="PNG")


def _write(report: Report, out: Path) -> list[str]:
    """results.md/.csv/.json and the plots, each written whole, never over a file camkit did
    not write."""
    folder = OutputFolder(out)
    folder.write_text("results.md", report.to_markdown())
    folder.write_text("results.csv", report.to_csv())
    folder.write_text("results.json", report.to_json())
    names = list(REPORT_FILES)
    for name, chart in report.plots():
        folder.write(f"{name}.png", functools.partial(_save_png, chart))
        names.append(f"{name}.png")
    return names


@dataclasses.dataclass
class _Counted:
    """A `Progress` that counts failures for the result."""

    progress: Progress
    failures: int = 0

    def fail(self, line: str) -> None:
        self.failures += 1
        self.progress.fail(line)


def _prepare(job: EvaluateJob, label: Label) -> tuple[LoadedModel, list[str] | None]:
    job.check(label)
    _check_free(job.folder, label)
    loaded = job.load()
    return loaded, job.layers(loaded.model)


LONG = 600.0
"""Seconds of estimated work above which `camkit evaluate` warns before it starts."""


def _say_cost(
    evaluation: Evaluation, first: Batch, images: int, layer: list[str] | None, progress: Progress
) -> None:
    """Before any work: what the evaluation will run and about how long it takes (timed on the
    first batch); a warning, with what would make it cheaper, when that is over ten minutes."""
    cost = evaluation_cost(evaluation, first.inputs, images, layer)
    metrics = evaluation.metrics
    progress.note(
        f"evaluating {images} images x {len(evaluation.explainers)} methods x "
        f"{len(metrics)} metrics ({', '.join(metrics)}): about "
        f"{duration(cost.seconds)}"
    )
    if cost.seconds > LONG:
        method = cost.costliest
        warnings.warn(
            f"this evaluation may take about {duration(cost.seconds)}, a forward pass "
            f"{cost.forward:.3f} s an image, {method} {cost.passes[method]:,.0f} passes "
            f"an image with its metrics; cheaper: a smaller --limit, or --methods "
            f"without {method}",
            CamkitWarning,
            stacklevel=2,
        )


def _check_classes(model: nn.Module, first: Batch, highest: int) -> None:
    with torch.no_grad():
        classes = select_output(model(first.inputs[:1])).shape[-1]
    if highest >= classes:
        raise UsageError(
            f"class {highest} of the data does not exist in a model with {classes} outputs: name "
            "the subfolders after the model's classes, or match its class order"
        )


def evaluate_dataset(
    job: EvaluateJob, progress: Progress | None = None, label: Label = str
) -> EvaluateResult:
    """Evaluate the job's methods with its metrics on its data; write results.md/.csv/.json
    and the plots into its folder.

    Raises `UsageError` before any work for a job that cannot run, and `JobInterrupted` on
    Ctrl-C after writing the report of the batches finished (its `result`). Unreadable images,
    refused masks and methods that do not fit the model are counted and told to `progress`.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as out:
        ...     job = EvaluateJob(out=Path(out), methods=("cam",), metrics=("drop",), limit=2,
        ...                       workers=0)
        ...     done = evaluate_dataset(job)
        >>> sorted(done.report.rows["cam"])
        ['Avg drop %', 'Explain s', 'Increase %']
    """
    counted = _Counted(progress or Collected())
    loaded, layer = _prepare(job, label)
    data, highest = dataset(job, loaded, label)
    rest: Iterator[tuple[int, Batch]] = iter(())
    first = _first_batch(data, job) if job.ray is not None else None
    if job.ray is None:
        rest = _batches(data, job, counted.fail)
        first = next(rest, None)
    if first is None:
        raise UsageError("no readable images to evaluate")
    _check_classes(loaded.model, first[1], highest)
    options = parse_method_options(job.method_options)
    left_out: list[str] = []
    everything = job.methods is None or job.methods == tuple(METHODS)  # the default, or all
    chosen = job.methods or DEFAULT_METHODS
    fail = left_out.append if everything else counted.fail
    methods = _applicable(chosen, loaded.model, layer, options, first[1], fail)
    _warn_left_out(left_out, loaded.name)
    if not methods:
        return EvaluateResult(None, failures=counted.failures)
    # One seed for the run: the model's random weights and the metrics' noise.
    settings = Settings(fill=_fill(job.fill, first[1].inputs), **{"seed": job.seed, **job.settings})
    evaluation = Evaluation(
        loaded.model,
        methods,
        metrics_for(job, data),
        settings=settings,
        layer=layer,
        method_options=options,
    )
    _say_cost(evaluation, first[1], len(data), layer, counted.progress)
    counted.progress.start(len(data))
    job.folder.mkdir(parents=True, exist_ok=True)
    started, interrupted = time.perf_counter(), False
    try:
        for measured in _results(job, data, evaluation, first, rest, counted, label):
            evaluation.add(measured)
        report = evaluation.report()
    except KeyboardInterrupt:
        report, interrupted = evaluation.report(finish=False), True
        report.info["interrupted"] = True
    except (ValueError, TypeError, RuntimeError) as error:  # the model failed mid-run
        counted.fail(first_line(error))
        return EvaluateResult(None, failures=counted.failures)
    for line in report.info.get("failed", []):
        counted.fail(line)
    report.info.update(
        model=loaded.name,
        data=job.data,
        methods=methods,
        seconds=round(time.perf_counter() - started, 1),
    )
    report.info["left out"] = left_out
    if job.command:
        report.info["command"] = job.command
    result = _written(report, job.folder, counted)
    result.total = len(data)
    if interrupted:
        raise JobInterrupted(result)
    return result


def _written(report: Report, out: Path, counted: _Counted) -> EvaluateResult:
    """The result, once the report of at least one image is written."""
    result = EvaluateResult(report, [], counted.failures, report.info["images"])
    if result.images:
        try:
            result.files = _write(report, out)
        except OutputError as error:
            counted.fail(str(error))
            result.failures = counted.failures
    return result
