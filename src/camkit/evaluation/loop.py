"""The evaluation loop: explain each batch once per method, hand the same maps to every metric
plug-in, and join the batches into a `Report`.

The clean forward pass of a batch is shared by all methods and metrics; each metric's perturbed
inputs go through the model in large batches. The loop knows no metric by name: what it does
with one comes from the plug-in's declarations (`camkit.evaluation.plugins`).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)

from camkit.errors import CamkitWarning, first_line
from camkit.evaluation.plugins import METRICS, Context, Metric, Settings, default_metrics
from camkit.evaluation.report import Report, build_report
from camkit.layers import LayerSpec
from camkit.methods.building import MethodSettings, build
from camkit.metrics import ModelScores
from camkit.registry import lookup
from camkit.seeds import batch_seed, seeded

T = TypeVar("T")


@dataclass
class Batch:
    """Model inputs (B, C, H, W), their classes (B,), and object masks (B, H, W) if known.

    `masked` (B,) bool says which rows have a mask when only some do (the others' rows of
    `masks` are ignored); None: every row has one when `masks` is given.

    Examples:
        >>> import torch
        >>> Batch(torch.zeros(2, 3, 8, 8), torch.tensor([0, 1])).masks is None
        True
    """

    inputs: Tensor
    labels: Tensor
    masks: Tensor | None = None
    masked: Tensor | None = None


@dataclass
class BatchResult:
    """What one batch adds to an evaluation: each method's metric parts and its costs. It is
    plain data, so a batch measured in another process (`camkit evaluate --ray`) is recorded
    exactly as one measured here.

    Attributes:
        position: the dataset index of the batch's first input (orders the batches).
        images: the batch's size; size: its spatial size.
        parts: method -> metric -> the metric's per-input results for this batch.
        seconds: method -> task ("explain" or a metric) -> seconds.
        forward: "method/task" or "clean" -> [forward calls, images].
        backward: method -> backward passes.
        masked: how many of the batch's images have an object mask.

    Examples:
        >>> from camkit.models import load_shapes_model
        >>> from camkit.data import ShapesDataset
        >>> data = ShapesDataset(2, seed=1).stack()
        >>> evaluation = Evaluation(load_shapes_model(), ["cam"], ["drop"])
        >>> result = evaluation.measure(Batch(data["image"], data["label"]), position=0)
        >>> result.images, list(result.parts["cam"])
        (2, ['drop'])
    """

    position: int
    images: int
    size: tuple[int, ...]
    parts: dict[str, dict[str, Any]]
    seconds: dict[str, dict[str, float]]
    forward: dict[str, list[int]]
    backward: dict[str, int]
    masked: int = 0


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during `evaluate`: `report` holds the figures of the batches that were finished
    (metrics that work after the last batch, like the sanity check, are left out). It is a
    `KeyboardInterrupt`, so code that does not look for it stops as on any Ctrl-C.

    Examples:
        >>> interrupted = EvaluationInterrupted(Report({}, info={"images": 8}))
        >>> str(interrupted), isinstance(interrupted, KeyboardInterrupt)
        ('evaluation interrupted after 8 images', True)
    """

    def __init__(self, report: Report) -> None:
        super().__init__(f"evaluation interrupted after {report.info['images']} images")
        self.report = report


def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    methods: Sequence[str],
    metrics: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    layer: LayerSpec = None,
    advance: Callable[[int], None] | None = None,
) -> Report:
    """Explain every batch with every method and score the maps with the `metrics` named
    (default: `default_metrics()`, the catalogue's others run when named).

    Metrics that need object masks (pointing, energy, boxacc) use the images that have them
    (`Batch.masked`); the report's info counts them (``masked_images``).
    The report's info holds, per method, the seconds of its explanations and of each metric,
    and the forward passes (calls and images) and backward passes the model made for them.

    Examples:
        >>> import torch
        >>> from camkit.models import load_shapes_model
        >>> from camkit.data import ShapesDataset
        >>> data = ShapesDataset(4, seed=1).stack()
        >>> batch = Batch(data["image"], data["label"], data["mask"])
        >>> report = evaluate(load_shapes_model(), [batch], ["gradcam"], ["drop", "pointing"])
        >>> sorted(report.rows["gradcam"])
        ['Avg drop %', 'Explain s', 'Increase %', 'Pointing %']
    """
    evaluation = Evaluation(model, methods, metrics, settings=settings, layer=layer)
    position = 0
    try:
        for batch in batches:
            evaluation.add(evaluation.measure(batch, position, advance))
            position += batch.inputs.shape[0]
    except KeyboardInterrupt as interrupt:
        report = evaluation.report(finish=False)  # the finished batches only
        report.info["interrupted"] = True
        raise EvaluationInterrupted(report) from interrupt
    report = evaluation.report()
    for line in report.info.get("failed", []):  # the report holds the rest
        warnings.warn(f"left out {line}", CamkitWarning, stacklevel=2)
    return report


class _PassCounter:
    """Counts the model's forward passes (calls and images) for whatever `task` is current,
    those of its copies too (the sanity check randomises a deep copy): a module-wide pre-hook
    for the time of a batch, counting modules of the model's own class."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.task = ""
        self.forward: dict[str, list[int]] = {}  # task -> [calls, images]

    def __enter__(self) -> _PassCounter:
        kind, depth = type(self.model), [0]  # only the outermost call of the class counts

        def enter(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            if type(module) is not kind:
                return
            depth[0] += 1
            if depth[0] > 1:
                return
            first = inputs[0] if inputs else None
            images = int(first.shape[0]) if isinstance(first, Tensor) and first.dim() else 1
            calls = self.forward.setdefault(self.task, [0, 0])
            calls[0] += 1
            calls[1] += images

        def leave(module: nn.Module, _inputs: object, _output: object) -> None:
            if type(module) is kind:
                depth[0] -= 1

        self.handles = [
            register_module_forward_pre_hook(enter),
            register_module_forward_hook(leave, always_call=True),
        ]
        return self

    def __exit__(self, *_: object) -> None:
        for handle in self.handles:
            handle.remove()

    def timed(self, task: str, work: Callable[[], T]) -> tuple[T, float]:
        """`work()` counted under `task`, and the seconds it took."""
        self.task = task
        started = time.perf_counter()
        result = work()
        return result, time.perf_counter() - started


def _devices(model: nn.Module) -> list[torch.device]:
    return [p.device for p in model.parameters()][:1]


class Evaluation:
    """The state of one evaluation: `measure` a batch (pure: it returns a `BatchResult`),
    `add` results in dataset order (from here or from other processes), then `report`.

    Each batch draws its randomness (noise copies, ROAD) from ``settings.seed`` and the
    batch's position, so a batch's figures do not depend on which batches came before it or
    on which process measured it.

    Examples:
        >>> from camkit.models import load_shapes_model
        >>> from camkit.data import ShapesDataset
        >>> data = ShapesDataset(4, seed=1).stack()
        >>> evaluation = Evaluation(load_shapes_model(), ["cam"], ["drop"])
        >>> for start in (0, 2):  # two batches of two images
        ...     batch = Batch(data["image"][start : start + 2], data["label"][start : start + 2])
        ...     evaluation.add(evaluation.measure(batch, start))
        >>> evaluation.report().info["images"]
        4
    """

    def __init__(
        self,
        model: nn.Module,
        methods: Sequence[str],
        metrics: Sequence[str] | None = None,
        *,
        settings: Settings | None = None,
        layer: LayerSpec = None,
        method_options: MethodSettings | None = None,
    ) -> None:
        metrics = default_metrics() if metrics is None else list(metrics)
        for name in metrics:
            lookup(METRICS, "metric", name)
        self.model, self.layer = model, layer
        self.method_options = dict(method_options or {})
        self.settings = settings or Settings()
        self.explainers = {m: build(m, model, layer, method_options) for m in methods}
        self.plugins = {m: {name: METRICS[name]() for name in metrics} for m in methods}
        self.seconds = {m: dict.fromkeys(["explain", *metrics], 0.0) for m in methods}
        self.backward = dict.fromkeys(methods, 0)
        self.forward: dict[str, list[int]] = {}
        self.images = 0
        self.masked = 0  # images with an object mask
        self.size: tuple[int, ...] = ()
        self.failed: list[str] = []  # "method: metric: why" of after-the-last-batch work

    @property
    def metrics(self) -> list[str]:
        """The names of the metrics measured."""
        return list(next(iter(self.plugins.values()), {}))

    def measure(
        self, batch: Batch, position: int = 0, advance: Callable[[int], None] | None = None
    ) -> BatchResult:
        """Explain one batch with every method and measure it with every metric; `position` is
        the dataset index of its first input. Records nothing: pass the result to `add`.
        `advance` is told each method's whole share of the batch's images as it finishes (the
        shares add up to the batch), so a one-batch run's progress moves and has a time left."""
        x, labels = batch.inputs, batch.labels.to(batch.inputs.device)
        masks = None if batch.masks is None else batch.masks.to(x.device)
        masked = None if batch.masked is None else batch.masked.to(x.device)
        seconds = {m: dict.fromkeys(spent, 0.0) for m, spent in self.seconds.items()}
        parts: dict[str, dict[str, Any]] = {m: {} for m in self.plugins}
        seed = batch_seed(self.settings.seed, position)
        with seeded(seed, *_devices(self.model)), _PassCounter(self.model) as passes:
            passes.task = "clean"
            with torch.no_grad():
                clean = ModelScores(self.model)(x)  # shared by every method and metric
            for index, (method, explainer) in enumerate(self.explainers.items()):
                explain = functools.partial(explainer, x, labels)
                explanation, seconds[method]["explain"] = passes.timed(f"{method}/explain", explain)
                forward = passes.forward.get(f"{method}/explain", [0, 0])[1] / len(x)
                context = Context(
                    self.model,
                    x,
                    labels,
                    masks,
                    explanation,
                    clean,
                    self.settings,
                    method,
                    self.layer,
                    position,
                    masked,
                    self.method_options.get(method, {}),
                    forward + explainer.needs_gradients,
                )
                for name, plugin in self.plugins[method].items():
                    part = functools.partial(plugin.part, context)
                    parts[method][name], seconds[method][name] = passes.timed(
                        f"{method}/{name}", part
                    )
                if advance is not None:
                    advance(_share(len(x), len(self.explainers), index))
        backward = {m: int(e.needs_gradients) for m, e in self.explainers.items()}
        with_masks = 0 if masks is None else len(x) if masked is None else int(masked.sum())
        return BatchResult(
            position,
            int(x.shape[0]),
            tuple(x.shape[2:]),
            parts,
            seconds,
            passes.forward,
            backward,
            with_masks,
        )

    def add(self, result: BatchResult) -> None:
        """Record a measured batch; batches are added in the order of their positions."""
        for method, plugins in self.plugins.items():
            for name, plugin in plugins.items():
                plugin.parts.append(result.parts[method][name])
            for task, spent in result.seconds[method].items():
                self.seconds[method][task] += spent
            self.backward[method] += result.backward[method]
        self._count(result.forward)
        self.images += result.images
        self.masked += result.masked
        self.size = result.size

    def _count(self, forward: dict[str, list[int]]) -> None:
        for task, (calls, images) in forward.items():
            count = self.forward.setdefault(task, [0, 0])
            count[0] += calls
            count[1] += images

    def _finish(self) -> None:
        """The metrics' work after the last batch (the sanity check), seeded and counted."""
        for method, plugins in self.plugins.items():
            with (
                seeded(self.settings.seed, *_devices(self.model)),
                _PassCounter(self.model) as passes,
            ):
                for name, plugin in plugins.items():
                    work = functools.partial(
                        plugin.finish, self.model, self.settings, method, self.layer
                    )
                    try:
                        _, spent = passes.timed(f"{method}/{name}", work)
                    except (ValueError, TypeError, RuntimeError) as error:
                        # One method's column is lost, not the whole evaluation.
                        self.failed.append(f"{method}: {name}: {first_line(error)}")
                        continue
                    self.seconds[method][name] += spent
            self._count(passes.forward)

    def report(self, finish: bool = True) -> Report:
        """The report of the batches added; `finish` runs the metrics' after-the-last-batch
        work (without it, the metrics that need it are left out)."""
        if finish:
            self._finish()
        plugins: dict[str, dict[str, Metric]] = {
            method: {n: p for n, p in named.items() if finish or not p.after_last_batch}
            for method, named in self.plugins.items()
        }
        report = build_report(
            plugins,
            self.settings,
            self.images,
            self.size,
            self.seconds,
            self.backward,
            self.forward,
        )
        report.info["masked_images"] = self.masked
        if self.failed:
            report.info["failed"] = list(self.failed)
        return report


def _share(images: int, methods: int, index: int) -> int:
    """Method `index`'s whole share of a batch's images: the shares of all add up to `images`."""
    return (index + 1) * images // methods - index * images // methods
