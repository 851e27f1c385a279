"""Run every metric for every method over a dataset, and report the table.

`evaluate` takes batches of inputs (with labels, and masks or boxes where the data has them),
explains each batch once per method and hands the same maps to every metric. The clean forward
pass of a batch is shared by all methods and metrics; each metric's perturbed inputs go through
the model in large batches. The `Report` holds per-method figures, mean curves and the pairwise
Win % table, and writes Markdown, CSV and JSON.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)

from camkit import metrics
from camkit.layers import LayerSpec
from camkit.measures import MEASURES, Context, Measure, SanityCheck
from camkit.methods import method_class
from camkit.metrics import ModelScores
from camkit.registry import lookup

METRICS: Mapping[str, type[Measure]] = MEASURES
"""Metric name -> plug-in (`camkit.measures`): register a new one with `register_measure`."""


def needs_regions() -> frozenset[str]:
    """The metrics that need object masks (run on the batches that have them)."""
    return frozenset(name for name, cls in MEASURES.items() if cls.needs_regions)


def column_specs() -> dict[str, tuple[str, str]]:
    """Column -> (better direction, format), in the order of the registered metrics."""
    table = {c: (better, form) for cls in MEASURES.values() for c, better, form in cls.columns}
    return {**table, "Explain s": ("lower", "{:.2f}")}


@dataclass
class Batch:
    """Model inputs (B, C, H, W), their classes (B,), and object masks (B, H, W) if known.

    `masked` (B,) bool says which rows have a mask when only some do (the others' rows of
    `masks` are ignored); None: every row has one when `masks` is given.
    """

    inputs: Tensor
    labels: Tensor
    masks: Tensor | None = None
    masked: Tensor | None = None


@dataclass
class Settings:
    """Protocol parameters; the defaults follow the papers, scaled to the input size.

    Examples:
        >>> Settings().steps, Settings(tolerance=6.0).pointing_tolerance((96, 96))
        (16, 6.0)
    """

    steps: int = 16  # deletion/insertion steps
    fill: float | Tensor = 0.0  # deleted pixels and Average Drop's "off" value, in input space
    percentages: Sequence[float] = (10, 30, 50, 70, 90)  # ROAD
    tolerance: float | None = None  # pointing game; None: 15 px at 224, scaled to the input
    thresholds: Tensor = field(default_factory=lambda: metrics.default_thresholds(0.05))
    sanity_images: int = 16  # cascading randomisation on the first N inputs
    seed: int = 0
    batch_size: int = 256  # rows per forward pass of perturbed inputs
    resamples: int = 1000  # bootstrap resamples for the intervals (0: none)

    def pointing_tolerance(self, size: Sequence[int]) -> float:
        return self.tolerance if self.tolerance is not None else 15.0 * min(size) / 224


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during `evaluate`: `report` holds the figures of the batches that were finished
    (the sanity check, which runs last, is left out). It is a `KeyboardInterrupt`, so code that
    does not look for it stops as on any Ctrl-C."""

    def __init__(self, report: Report) -> None:
        super().__init__(f"evaluation interrupted after {report.info['images']} images")
        self.report = report


@dataclass
class Report:
    """What `evaluate` measured: one row of summary figures per method, and the details.

    Examples:
        >>> report = Report({"gradcam": {"Avg drop %": 12.5}}, {}, {}, {}, {"images": 4})
        >>> print(report.to_markdown().splitlines()[2])
        | gradcam | 12.50 |
    """

    rows: dict[str, dict[str, float]]
    curves: dict[str, dict[str, list[float]]]  # method -> deletion/insertion mean curves
    sanity: dict[str, dict[str, list[Any]]]  # method -> steps, spearman, ssim (means)
    win: dict[str, dict[str, float]]  # win[a][b]: Win % of a over b
    info: dict[str, Any]
    # method -> column -> [low, high]: the 95% bootstrap interval over images
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # column -> method a -> method b -> whether a and b differ (paired bootstrap, 95%)
    differ: dict[str, dict[str, dict[str, bool]]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        present = {c for row in self.rows.values() for c in row}
        return [c for c in column_specs() if c in present]

    def to_markdown(self) -> str:
        columns = self.columns
        arrows = {"lower": " ↓", "higher": " ↑"}
        spec = column_specs()
        header = ["Method", *(c + arrows[spec[c][0]] for c in columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        best = {c: self._best(c) for c in columns}
        for method, row in self.rows.items():
            cells = [self._cell(method, c, row.get(c), best[c]) for c in columns]
            lines.append("| " + " | ".join([method, *cells]) + " |")
        lines += self._mask_note()
        if self.intervals:
            lines += ["", f"± half the 95% bootstrap interval over images ("
                      f"{self.info.get('bootstrap', {}).get('resamples', '?')} resamples, "
                      "seeded); * differs from the column's best method (paired bootstrap, "
                      "95%)."]  # fmt: skip
        if self.win:
            names = list(self.win)
            lines += ["", "Win % (row beats column: smaller relative drop on the same image)", ""]
            lines.append("| | " + " | ".join(names) + " |")
            lines.append("|" + "---|" * (len(names) + 1))
            for a in names:
                cells = ["" if a == b else f"{self.win[a][b]:.1f}" for b in names]
                lines.append("| " + " | ".join([a, *cells]) + " |")
        lines += self._cost_lines()
        return "\n".join(lines) + "\n"

    def _mask_note(self) -> list[str]:
        """Which images the localisation columns count, when not all had a mask."""
        regional = [c for cls in METRICS.values() if cls.needs_regions for c, _, _ in cls.columns]
        shown = [c for c in self.columns if c in regional]
        masked, images = self.info.get("masked_images"), self.info.get("images")
        if not shown or masked is None or masked == images:
            return []
        return ["", f"{', '.join(shown)}: on the {masked} of {images} images that have an "
                "object mask."]  # fmt: skip

    def _cost_lines(self) -> list[str]:
        """Seconds per method and metric, and the model passes they made."""
        seconds, passes = self.info.get("seconds_per_task"), self.info.get("passes")
        if not seconds or not passes:
            return []
        tasks = list(next(iter(seconds.values())))
        header = ["Method", *(f"{t} s" for t in tasks), "forward passes", "images", "backward"]
        lines = ["", "Cost: seconds per task, and the model's passes", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method, spent in seconds.items():
            count = passes[method]
            cells = [f"{spent[t]:.2f}" for t in tasks]
            cells += [str(count["forward"]), str(count["forward_images"]), str(count["backward"])]
            lines.append("| " + " | ".join([method, *cells]) + " |")
        return lines

    def _best(self, column: str) -> str | None:
        """The method with the best figure in `column` (None if the column is empty)."""
        scored = {m: r[column] for m, r in self.rows.items() if r.get(column) is not None}
        if not scored:
            return None
        pick = min if column_specs()[column][0] == "lower" else max
        return pick(scored, key=scored.__getitem__)

    def _cell(self, method: str, column: str, value: float | None, best: str | None) -> str:
        text = _format(column, value)
        interval = self.intervals.get(method, {}).get(column)
        if value is None or interval is None:
            return text
        half = column_specs()[column][1].format((interval[1] - interval[0]) / 2)
        worse = method != best and self.differ.get(column, {}).get(method, {}).get(str(best), False)
        return f"{text} ±{half}{'*' if worse else ''}"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        bounded = [c for c in self.columns if any(c in i for i in self.intervals.values())]
        writer.writerow(["method", *self.columns, *(f"{c} {e}" for c in bounded
                                                      for e in ("low", "high"))])  # fmt: skip
        for method, row in self.rows.items():
            limits = [self.intervals.get(method, {}).get(c, [None, None]) for c in bounded]
            writer.writerow([method, *(_csv(row.get(c)) for c in self.columns),
                             *(_csv(v) for pair in limits for v in pair)])  # fmt: skip
        return buffer.getvalue()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def _format(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    return column_specs()[column][1].format(value)


def _csv(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    methods: Sequence[str],
    chosen: Sequence[str] = tuple(METRICS),
    *,
    settings: Settings | None = None,
    layer: LayerSpec = None,
    advance: Callable[[int], None] | None = None,
) -> Report:
    """Explain every batch with every method and score the maps with the chosen metrics.

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
    evaluation = Evaluation(model, methods, chosen, settings=settings, layer=layer)
    position = 0
    try:
        for batch in batches:
            evaluation.add(evaluation.measure(batch, position))
            position += batch.inputs.shape[0]
            if advance is not None:
                advance(batch.inputs.shape[0])
    except KeyboardInterrupt as interrupt:
        report = evaluation.report(finish=False)  # the finished batches; no sanity check
        report.info["interrupted"] = True
        raise EvaluationInterrupted(report) from interrupt
    return evaluation.report()


def _cuda_devices(model: nn.Module) -> set[torch.device]:
    return {p.device for p in model.parameters() if p.device.type == "cuda"}


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
    """

    position: int
    images: int
    size: tuple[int, ...]
    parts: dict[str, dict[str, Any]]
    seconds: dict[str, dict[str, float]]
    forward: dict[str, list[int]]
    backward: dict[str, int]
    masked: int = 0


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
        chosen: Sequence[str] = tuple(METRICS),
        *,
        settings: Settings | None = None,
        layer: LayerSpec = None,
    ) -> None:
        for name in chosen:
            lookup(METRICS, "metric", name)
        self.model, self.layer = model, layer
        self.settings = settings or Settings()
        self.explainers = {m: method_class(m)(model, layer=layer) for m in methods}
        self.measures = {m: {name: METRICS[name]() for name in chosen} for m in methods}
        self.seconds = {m: dict.fromkeys(["explain", *chosen], 0.0) for m in methods}
        self.backward = dict.fromkeys(methods, 0)
        self.forward: dict[str, list[int]] = {}
        self.images = 0
        self.masked = 0  # images with an object mask
        self.size: tuple[int, ...] = ()

    def measure(self, batch: Batch, position: int = 0) -> BatchResult:
        """Explain one batch with every method and measure it with every metric; `position` is
        the dataset index of its first input. Records nothing: pass the result to `add`."""
        x, labels = batch.inputs, batch.labels.to(batch.inputs.device)
        masks = None if batch.masks is None else batch.masks.to(x.device)
        masked = None if batch.masked is None else batch.masked.to(x.device)
        seconds = {m: dict.fromkeys(spent, 0.0) for m, spent in self.seconds.items()}
        parts: dict[str, dict[str, Any]] = {m: {} for m in self.measures}
        devices = [d.index or 0 for d in _cuda_devices(self.model)]
        with torch.random.fork_rng(devices=devices), _PassCounter(self.model) as passes:
            # The caller's random stream is left as it was.
            torch.manual_seed(self.settings.seed * 1_000_003 + position)

            def timed(method: str, task: str, work: Callable[[], Any]) -> Any:
                passes.task = f"{method}/{task}"
                started = time.perf_counter()
                result = work()
                seconds[method][task] += time.perf_counter() - started
                return result

            passes.task = "clean"
            with torch.no_grad():
                clean = ModelScores(self.model)(x)  # shared by every method and metric
            for method, explainer in self.explainers.items():
                explanation = timed(method, "explain", functools.partial(explainer, x, labels))
                context = Context(self.model, x, labels, masks, explanation, clean,
                                  self.settings, method, self.layer, position,
                                  masked)  # fmt: skip
                for name, plugin in self.measures[method].items():
                    part = timed(method, name, functools.partial(plugin.part, context))
                    parts[method][name] = part
        backward = {m: int(e.needs_gradients) for m, e in self.explainers.items()}
        with_masks = 0 if masks is None else len(x) if masked is None else int(masked.sum())
        return BatchResult(position, int(x.shape[0]), tuple(x.shape[2:]), parts, seconds,
                           passes.forward, backward, with_masks)  # fmt: skip

    def add(self, result: BatchResult) -> None:
        """Record a measured batch; batches are added in the order of their positions."""
        for method, plugins in self.measures.items():
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

    def report(self, finish: bool = True) -> Report:
        """The report of the batches added; `finish` runs the metrics' after-the-last-batch
        work (the sanity check)."""
        measures = self.measures
        if finish:
            devices = [d.index or 0 for d in _cuda_devices(self.model)]
            for method, plugins in measures.items():
                passes = _PassCounter(self.model)
                with torch.random.fork_rng(devices=devices), passes:
                    torch.manual_seed(self.settings.seed)
                    for name, plugin in plugins.items():
                        passes.task = f"{method}/{name}"
                        started = time.perf_counter()
                        plugin.finish(self.model, self.settings, method, self.layer)
                        self.seconds[method][name] += time.perf_counter() - started
                self._count(passes.forward)
        else:
            measures = {m: {n: v for n, v in ms.items() if n != "sanity"}
                        for m, ms in measures.items()}  # fmt: skip
        report = _report(measures, self.settings, self.images, self.size, self.seconds,
                         self.backward, self.forward)  # fmt: skip
        report.info["masked_images"] = self.masked
        return report


def _report(
    measures: dict[str, dict[str, Measure]],
    settings: Settings,
    images: int,
    size: tuple[int, ...],
    seconds: dict[str, dict[str, float]],
    backward: dict[str, int],
    forward: dict[str, list[int]],
) -> Report:
    rows: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    sanity: dict[str, dict[str, list[Any]]] = {}
    extra: dict[str, dict[str, Any]] = {}
    for method, plugins in measures.items():
        row: dict[str, float] = {}
        for name, measure in plugins.items():
            row.update(measure.summary())
            if measure.curves():
                curves.setdefault(method, {}).update(measure.curves())
            for key, value in measure.info().items():
                extra.setdefault(key, {})[method] = value
            if isinstance(measure, SanityCheck) and measure.result is not None:
                sanity[method] = measure.details()
            del name
        row["Explain s"] = seconds[method]["explain"]
        rows[method] = row
    drops = {
        m: torch.cat([r.drop for r in plugins["drop"].done()])
        for m, plugins in measures.items()
        if "drop" in plugins and plugins["drop"].done()
    }
    win = {a: {b: metrics.win_rate(drops[a], drops[b]) for b in drops} for a in drops}
    chosen = next(iter(measures.values()), {})
    info = {
        "images": images,
        "input_size": list(size),
        "metrics": [m for m in METRICS if m in chosen],
        "steps": settings.steps,
        "road_percentages": list(settings.percentages),
        "pointing_tolerance_px": settings.pointing_tolerance(size) if size else None,
        "box_thresholds": [round(t, 4) for t in settings.thresholds.tolist()],
        "box_best_threshold": extra.get("box_best_threshold", {}),
        "sanity_images": min(settings.sanity_images, images),
        "fill": torch.as_tensor(settings.fill).tolist(),
        "seconds_per_task": {m: {k: round(v, 3) for k, v in s.items()} for m, s in seconds.items()},
        "passes": {
            m: {
                "forward": sum(v[0] for k, v in forward.items() if k.startswith(m + "/")),
                "forward_images": sum(v[1] for k, v in forward.items() if k.startswith(m + "/")),
                "backward": backward[m],
            }
            for m in measures
        }
        | {
            "clean": {
                "forward": forward.get("clean", [0, 0])[0],
                "forward_images": forward.get("clean", [0, 0])[1],
                "backward": 0,
            }
        },
    }
    intervals, differ = _bootstrap(measures, settings)
    if intervals:
        info["bootstrap"] = {"resamples": settings.resamples, "seed": settings.seed, "level": 0.95}
    return Report(rows, curves, sanity, win if len(drops) > 1 else {}, info, intervals, differ)


def _bootstrap(
    measures: dict[str, dict[str, Measure]], settings: Settings
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, dict[str, bool]]]]:
    """95% percentile intervals of every figure over images, and paired differences.

    Every method is resampled with the same image indices (one draw per image count, seeded),
    so a difference between two methods is measured on the same images: the pair differs when
    the interval of the difference excludes 0.
    """
    if settings.resamples < 1:
        return {}, {}
    generator = torch.Generator().manual_seed(settings.seed)
    drawn: dict[int, Tensor] = {}
    samples: dict[str, dict[str, Tensor]] = {}  # column -> method -> (R,) resampled figures
    intervals: dict[str, dict[str, list[float]]] = {}
    for method, plugins in measures.items():
        for plugin in plugins.values():
            for column, (count, figure) in plugin.statistics().items():
                if count not in drawn:
                    drawn[count] = torch.randint(count, (settings.resamples, count),
                                                 generator=generator)  # fmt: skip
                values = figure(drawn[count]).double()
                samples.setdefault(column, {})[method] = values
                low, high = torch.quantile(values, torch.tensor([0.025, 0.975]).double())
                intervals.setdefault(method, {})[column] = [float(low), float(high)]
    differ: dict[str, dict[str, dict[str, bool]]] = {}
    for column, by_method in samples.items():
        table = differ.setdefault(column, {})
        for a, first in by_method.items():
            for b, second in by_method.items():
                if len(first) != len(second) or a == b:
                    table.setdefault(a, {})[b] = False
                    continue
                low, high = torch.quantile(first - second, torch.tensor([0.025, 0.975]).double())
                table.setdefault(a, {})[b] = bool(low > 0 or high < 0)
    return intervals, differ
