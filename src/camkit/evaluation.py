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
import io
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from camkit import metrics
from camkit.explanation import Explanation
from camkit.layers import LayerSpec
from camkit.methods import METHODS
from camkit.metrics._common import Scores

METRICS = ("drop", "deletion", "insertion", "road", "pointing", "energy", "boxacc", "sanity")
NEEDS_REGIONS = frozenset({"pointing", "energy", "boxacc"})

# Column name -> (metric, better direction, how to format).
COLUMNS: dict[str, tuple[str, str, str]] = {
    "Avg drop %": ("drop", "lower", "{:.2f}"),
    "Increase %": ("drop", "higher", "{:.1f}"),
    "Deletion AUC": ("deletion", "lower", "{:.3f}"),
    "Insertion AUC": ("insertion", "higher", "{:.3f}"),
    "ROAD MoRF acc": ("road", "lower", "{:.3f}"),
    "ROAD LeRF acc": ("road", "higher", "{:.3f}"),
    "Pointing %": ("pointing", "higher", "{:.1f}"),
    "Energy %": ("energy", "higher", "{:.1f}"),
    "MaxBoxAcc %": ("boxacc", "higher", "{:.1f}"),
    "Sanity rho": ("sanity", "lower", "{:.3f}"),
    "Sanity SSIM": ("sanity", "lower", "{:.3f}"),
    "Explain s": ("", "lower", "{:.2f}"),
}


@dataclass
class Batch:
    """Model inputs (B, C, H, W), their classes (B,), and object masks (B, H, W) if known."""

    inputs: Tensor
    labels: Tensor
    masks: Tensor | None = None


@dataclass
class Settings:
    """Protocol parameters; the defaults follow the papers, scaled to the input size.

    Example:
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
class _Collected:
    """Per-input results of one method, concatenated over batches."""

    seconds: float = 0.0
    confidence: list[metrics.Confidence] = field(default_factory=list)
    deletion: list[Tensor] = field(default_factory=list)
    insertion: list[Tensor] = field(default_factory=list)
    morf: list[Tensor] = field(default_factory=list)
    lerf: list[Tensor] = field(default_factory=list)
    hits: list[Tensor] = field(default_factory=list)
    classes: list[Tensor] = field(default_factory=list)
    energy: list[Tensor] = field(default_factory=list)
    box_hits: list[Tensor] = field(default_factory=list)  # (B, T) IoU >= 0.5 per threshold
    sanity: metrics.Sanity | None = None

    def lengths(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items() if isinstance(v, list)}

    def truncate(self, lengths: dict[str, int]) -> None:
        """Drop what a batch that did not finish added."""
        for name, length in lengths.items():
            del getattr(self, name)[length:]


@dataclass
class Report:
    """What `evaluate` measured: one row of summary figures per method, and the details.

    Example:
        >>> report = Report({"gradcam": {"Avg drop %": 12.5}}, {}, {}, {}, {"images": 4})
        >>> print(report.to_markdown().splitlines()[2])
        | gradcam | 12.50 |
    """

    rows: dict[str, dict[str, float]]
    curves: dict[str, dict[str, list[float]]]  # method -> deletion/insertion mean curves
    sanity: dict[str, dict[str, list[Any]]]  # method -> steps, spearman, ssim (means)
    win: dict[str, dict[str, float]]  # win[a][b]: Win % of a over b
    info: dict[str, Any]

    @property
    def columns(self) -> list[str]:
        present = {c for row in self.rows.values() for c in row}
        return [c for c in COLUMNS if c in present]

    def to_markdown(self) -> str:
        columns = self.columns
        arrows = {"lower": " ↓", "higher": " ↑"}
        header = ["Method", *(c + arrows[COLUMNS[c][1]] for c in columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method, row in self.rows.items():
            cells = [_format(c, row.get(c)) for c in columns]
            lines.append("| " + " | ".join([method, *cells]) + " |")
        if self.win:
            names = list(self.win)
            lines += ["", "Win % (row beats column: smaller relative drop on the same image)", ""]
            lines.append("| | " + " | ".join(names) + " |")
            lines.append("|" + "---|" * (len(names) + 1))
            for a in names:
                cells = ["" if a == b else f"{self.win[a][b]:.1f}" for b in names]
                lines.append("| " + " | ".join([a, *cells]) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["method", *self.columns])
        for method, row in self.rows.items():
            writer.writerow([method, *(_csv(row.get(c)) for c in self.columns)])
        return buffer.getvalue()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def _format(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    return COLUMNS[column][2].format(value)


def _csv(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    methods: Sequence[str],
    chosen: Sequence[str] = METRICS,
    *,
    settings: Settings | None = None,
    layer: LayerSpec = None,
    advance: Callable[[int], None] | None = None,
) -> Report:
    """Explain every batch with every method and score the maps with the chosen metrics.

    Metrics that need object masks (pointing, energy, boxacc) use the batches that have them.

    Example:
        >>> import torch
        >>> from camkit.models import load_shapes_model
        >>> from camkit.data import ShapesDataset
        >>> data = ShapesDataset(4, seed=1).stack()
        >>> batch = Batch(data["image"], data["label"], data["mask"])
        >>> report = evaluate(load_shapes_model(), [batch], ["gradcam"], ["drop", "pointing"])
        >>> sorted(report.rows["gradcam"])
        ['Avg drop %', 'Explain s', 'Increase %', 'Pointing %']
    """
    settings = settings or Settings()
    unknown = [m for m in methods if m not in METHODS] + [m for m in chosen if m not in METRICS]
    if unknown:
        raise ValueError(
            f"unknown method or metric {unknown[0]!r}; methods: {', '.join(METHODS)}; "
            f"metrics: {', '.join(METRICS)}"
        )
    devices = [d.index or 0 for d in _cuda_devices(model)]
    with torch.random.fork_rng(devices=devices):
        # Seeded randomness (noise copies, ROAD, randomisation) repeats run after run; the
        # caller's random stream is left as it was.
        torch.manual_seed(settings.seed)
        return _evaluate(model, batches, methods, chosen, settings, layer, advance)


def _cuda_devices(model: nn.Module) -> set[torch.device]:
    return {p.device for p in model.parameters() if p.device.type == "cuda"}


def _evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    methods: Sequence[str],
    chosen: Sequence[str],
    settings: Settings,
    layer: LayerSpec,
    advance: Callable[[int], None] | None,
) -> Report:
    explainers = {m: METHODS[m](model, layer=layer) for m in methods}
    collected = {m: _Collected() for m in methods}
    sanity_inputs: list[Tensor] = []
    sanity_labels: list[Tensor] = []
    images = 0
    size: tuple[int, ...] = ()
    finished = {m: c.lengths() for m, c in collected.items()}
    try:
        for batch in batches:
            x, labels = batch.inputs, batch.labels.to(batch.inputs.device)
            with torch.no_grad():
                clean = Scores(model)(x)  # shared by every method and metric
            for method, explainer in explainers.items():
                started = time.perf_counter()
                explanation = explainer(x, labels)
                collected[method].seconds += time.perf_counter() - started
                _score_batch(
                    model, x, batch, explanation, clean, chosen, settings, collected[method]
                )
            finished = {m: c.lengths() for m, c in collected.items()}
            size = tuple(x.shape[2:])
            images += x.shape[0]
            taken = sum(t.shape[0] for t in sanity_inputs)
            if "sanity" in chosen and taken < settings.sanity_images:
                sanity_inputs.append(x[: settings.sanity_images - taken])
                sanity_labels.append(labels[: settings.sanity_images - taken])
            if advance is not None:
                advance(x.shape[0])
    except KeyboardInterrupt as interrupt:
        for method, c in collected.items():
            c.truncate(finished[method])
        partial = [m for m in chosen if m != "sanity"]
        report = _report(collected, partial, settings, images, size)
        report.info["interrupted"] = True
        raise EvaluationInterrupted(report) from interrupt
    if "sanity" in chosen and sanity_inputs:
        x, labels = torch.cat(sanity_inputs), torch.cat(sanity_labels)
        for method in methods:
            collected[method].sanity = metrics.cascading_randomisation(
                model, x, method, labels, seed=settings.seed, layer=layer
            )
    return _report(collected, chosen, settings, images, size)


def _score_batch(
    model: nn.Module,
    x: Tensor,
    batch: Batch,
    explanation: Explanation,
    clean: Tensor,
    chosen: Sequence[str],
    settings: Settings,
    out: _Collected,
) -> None:
    common = {"base": clean, "batch_size": settings.batch_size}
    fill = settings.fill
    if "drop" in chosen:
        out.confidence.append(metrics.confidence(model, x, explanation, baseline=fill, **common))
    if "deletion" in chosen:
        curve = metrics.deletion(model, x, explanation, steps=settings.steps, fill=fill, **common)
        out.deletion.append(curve.scores)
    if "insertion" in chosen:
        out.insertion.append(
            metrics.insertion(model, x, explanation, steps=settings.steps, **common).scores
        )
    if "road" in chosen:
        for order, store in (("morf", out.morf), ("lerf", out.lerf)):
            result = metrics.road(
                model,
                x,
                explanation,
                order=order,
                percentages=settings.percentages,
                seed=settings.seed,
                **common,
            )
            store.append(result.correct)
    if batch.masks is None:
        return
    masks = batch.masks.to(x.device)
    if "pointing" in chosen:
        tolerance = settings.pointing_tolerance(x.shape[2:])
        pointing = metrics.pointing_game(explanation, masks, tolerance=tolerance)
        out.hits.append(pointing.hits)
        out.classes.append(pointing.classes)
    boxes = metrics.masks_to_boxes(masks)
    if "energy" in chosen:
        out.energy.append(metrics.energy_pointing_game(explanation, boxes))
    if "boxacc" in chosen:
        out.box_hits.append(metrics.box_accuracy(explanation, boxes, settings.thresholds).hits)


def _report(
    collected: dict[str, _Collected],
    chosen: Sequence[str],
    settings: Settings,
    images: int,
    size: tuple[int, ...],
) -> Report:
    rows: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    sanity: dict[str, dict[str, list[Any]]] = {}
    best_thresholds: dict[str, float] = {}
    for method, c in collected.items():
        row: dict[str, float] = {}
        if c.confidence:
            joined = metrics.Confidence(
                torch.cat([r.base for r in c.confidence]),
                torch.cat([r.masked for r in c.confidence]),
            )
            row["Avg drop %"] = joined.average_drop
            row["Increase %"] = joined.increase_in_confidence
        for name, parts in (("deletion", c.deletion), ("insertion", c.insertion)):
            if parts:
                scores = torch.cat(parts)
                row[f"{name.capitalize()} AUC"] = float(metrics.auc(scores).mean())
                curves.setdefault(method, {})[name] = scores.mean(dim=0).tolist()
        if c.morf:
            row["ROAD MoRF acc"] = float(torch.cat(c.morf).float().mean())
            row["ROAD LeRF acc"] = float(torch.cat(c.lerf).float().mean())
            curves.setdefault(method, {})["road_morf"] = torch.cat(c.morf).float().mean(0).tolist()
            curves.setdefault(method, {})["road_lerf"] = torch.cat(c.lerf).float().mean(0).tolist()
        if c.hits:
            pointing = metrics.Pointing(torch.cat(c.hits), torch.cat(c.classes))
            row["Pointing %"] = 100 * pointing.accuracy
        if c.energy:
            row["Energy %"] = 100 * float(torch.cat(c.energy).mean())
        if c.box_hits:
            boxes = metrics.BoxAccuracy(settings.thresholds, torch.cat(c.box_hits), 0.5)
            row["MaxBoxAcc %"] = 100 * boxes.max_box_accuracy
            best_thresholds[method] = boxes.best_threshold
        if c.sanity is not None:
            row["Sanity rho"] = float(c.sanity.mean_spearman.mean())
            row["Sanity SSIM"] = float(c.sanity.mean_ssim.mean())
            sanity[method] = {
                "steps": c.sanity.steps,
                "spearman": c.sanity.mean_spearman.tolist(),
                "ssim": c.sanity.mean_ssim.tolist(),
            }
        row["Explain s"] = c.seconds
        rows[method] = row
    drops = {
        m: torch.cat([r.drop for r in c.confidence]) for m, c in collected.items() if c.confidence
    }
    win = {a: {b: metrics.win_rate(drops[a], drops[b]) for b in drops} for a in drops}
    info = {
        "images": images,
        "input_size": list(size),
        "metrics": [m for m in METRICS if m in chosen],
        "steps": settings.steps,
        "road_percentages": list(settings.percentages),
        "pointing_tolerance_px": settings.pointing_tolerance(size) if size else None,
        "box_thresholds": [round(t, 4) for t in settings.thresholds.tolist()],
        "box_best_threshold": {m: round(t, 4) for m, t in best_thresholds.items()},
        "sanity_images": min(settings.sanity_images, images),
        "fill": torch.as_tensor(settings.fill).tolist(),
    }
    return Report(rows, curves, sanity, win if len(drops) > 1 else {}, info)
