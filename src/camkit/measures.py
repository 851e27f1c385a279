"""The metrics of `camkit evaluate` as plug-ins: one registered class per metric.

A plug-in says what it needs (`needs_regions`: object masks), measures each batch of one
method's explanations (`measure`: per batch, so batches measured anywhere are joined exactly,
and an interrupted run keeps exactly the batches that finished), and sums up (`summary`: the
table's columns; `curves`: mean curves for the plots; `finish`: work after the last batch).
A new metric is one class:

    >>> import torch
    >>> from camkit.measures import MEASURES, Measure, register_measure, unregister_measure
    >>> @register_measure("peak")
    ... class Peak(Measure):
    ...     columns = (("Peak share %", "higher", "{:.1f}"),)
    ...     def measure(self, context):
    ...         maps = context.explanation.maps[:, 0].flatten(1)
    ...         return (maps == 1.0).float().mean(dim=1)
    ...     def summary(self):
    ...         return {"Peak share %": 100 * float(torch.cat(self.done()).mean())}
    >>> "peak" in MEASURES
    True
    >>> unregister_measure("peak")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from camkit import metrics
from camkit.explanation import Explanation
from camkit.layers import LayerSpec
from camkit.registry import adder


@dataclasses.dataclass(frozen=True)
class Context:
    """What a plug-in sees for one batch of one method.

    Attributes:
        model: the evaluated model.
        x: the batch (B, C, *spatial).
        labels: (B,) classes; masks: (B, H, W) object masks or None.
        explanation: the method's explanation of the labels.
        clean: the model's clean class probabilities (B, classes), shared by all metrics.
        settings: the protocol parameters (`camkit.evaluation.Settings`).
        method: the method's name; layer: the explained layer spec.
        position: the dataset index of the batch's first input.
        masked: (B,) bool, the rows whose mask is real when only some are; None: all (or none,
            when `masks` is None). A plug-in that needs masks sees only those rows.
    """

    model: nn.Module
    x: Tensor
    labels: Tensor
    masks: Tensor | None
    explanation: Explanation
    clean: Tensor
    settings: Any
    method: str
    layer: LayerSpec
    position: int = 0
    masked: Tensor | None = None

    def with_masks(self) -> Context | None:
        """The context of the rows that have a mask (None: no row has one)."""
        if self.masks is None or (self.masked is not None and not bool(self.masked.any())):
            return None
        if self.masked is None or bool(self.masked.all()):
            return dataclasses.replace(self, masked=None)
        rows = self.masked.nonzero().flatten()
        e = self.explanation
        explanation = dataclasses.replace(
            e,
            maps=e.maps[rows],
            raw=tuple(r[rows] for r in e.raw),
            targets=None if e.targets is None else e.targets[rows],
            scores=e.scores[rows],
            outputs=e.outputs[rows] if isinstance(e.outputs, Tensor) else e.outputs,
        )
        return dataclasses.replace(self, x=self.x[rows], labels=self.labels[rows],
                                   masks=self.masks[rows], explanation=explanation,
                                   clean=self.clean[rows], masked=None)  # fmt: skip


class Measure:
    """Base of a metric plug-in; one instance per evaluated method."""

    name: ClassVar[str] = ""
    needs_regions: ClassVar[bool] = False
    # (column, better: "lower" or "higher", format) for each column of the table
    columns: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    def __init__(self) -> None:
        self.parts: list[Any] = []  # one entry per batch seen (None: the batch had no masks)

    def update(self, context: Context) -> None:
        """Measure one batch and keep its part."""
        self.parts.append(self.part(context))

    def part(self, context: Context) -> Any:
        """One batch's part, kept by nothing: `camkit.evaluation` measures batches in any
        process and appends in order. A region metric measures the rows with a mask (None:
        the batch has none)."""
        if not self.needs_regions:
            return self.measure(context)
        regional = context.with_masks()
        return None if regional is None else self.measure(regional)

    def measure(self, context: Context) -> Any:
        """The per-input results of one batch."""
        raise NotImplementedError

    def done(self) -> list[Any]:
        """The results of the batches measured."""
        return [p for p in self.parts if p is not None]

    def finish(self, model: nn.Module, settings: Any, method: str, layer: LayerSpec) -> None:
        """Work after the last batch (default: none)."""

    def summary(self) -> dict[str, float]:
        """The table's figures for this method (columns absent when nothing was measured)."""
        raise NotImplementedError

    def curves(self) -> dict[str, list[float]]:
        """Mean curves for the plots (default: none)."""
        return {}

    def statistics(self) -> dict[str, Statistic]:
        """Column -> (image count n, f): ``f(indices)`` recomputes the column's figure on each
        row of resampled image indices (R, n) -> (R,). `camkit.evaluation` bootstraps the
        intervals and the paired differences with it (default: none)."""
        return {}

    def info(self) -> dict[str, Any]:
        """Extra facts for the report's info (default: none)."""
        return {}


_REGISTRY: dict[str, type[Measure]] = {}
MEASURES: Mapping[str, type[Measure]] = MappingProxyType(_REGISTRY)
"""Metric name -> plug-in class, in the order of the report's columns."""

M = TypeVar("M", bound=type[Measure])
Statistic = tuple[int, Callable[[Tensor], Tensor]]


def _mean_of(values: Tensor, scale: float = 1.0) -> Statistic:
    """The mean of per-image values, as a statistic."""
    values = values.float()
    return len(values), lambda indices: values[indices].mean(dim=1) * scale


def register_measure(name: str) -> Callable[[M], M]:
    """Class decorator: make a plug-in available to `evaluate` and `camkit evaluate --metrics`."""

    return adder(_REGISTRY, "metric", name)


def unregister_measure(name: str) -> None:
    """Remove a plug-in added with `register_measure` (tests and examples clean up with it)."""
    _REGISTRY.pop(name, None)


def _cat(parts: Sequence[Tensor]) -> Tensor:
    return torch.cat(list(parts))


@register_measure("drop")
class Drop(Measure):
    """Average Drop % and Increase in Confidence % (Grad-CAM++ paper); Win % uses the drops."""

    columns = (("Avg drop %", "lower", "{:.2f}"), ("Increase %", "higher", "{:.1f}"))

    def measure(self, context: Context) -> metrics.Confidence:
        settings = context.settings
        return metrics.confidence(
            context.model,
            context.x,
            context.explanation,
            baseline=settings.fill,
            base=context.clean,
            batch_size=settings.batch_size,
        )

    def joined(self) -> metrics.Confidence:
        parts = self.done()
        return metrics.Confidence(_cat([r.base for r in parts]), _cat([r.masked for r in parts]))

    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        joined = self.joined()
        return {"Avg drop %": joined.average_drop, "Increase %": joined.increase_in_confidence}

    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        joined = self.joined()
        return {
            "Avg drop %": _mean_of(joined.drop.clamp_min(0), 100),
            "Increase %": _mean_of(joined.masked > joined.base, 100),
        }


class _Curve(Measure):
    def curves(self) -> dict[str, list[float]]:
        return {self.name: _cat(self.done()).mean(dim=0).tolist()} if self.done() else {}

    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        return {self.columns[0][0]: float(metrics.auc(_cat(self.done())).mean())}

    def statistics(self) -> dict[str, Statistic]:
        return {self.columns[0][0]: _mean_of(metrics.auc(_cat(self.done())))} if self.done() else {}


@register_measure("deletion")
class Deletion(_Curve):
    """Deletion AUC (RISE): the probability as the most relevant pixels are removed."""

    columns = (("Deletion AUC", "lower", "{:.3f}"),)

    def measure(self, context: Context) -> Tensor:
        s = context.settings
        return metrics.deletion(
            context.model,
            context.x,
            context.explanation,
            steps=s.steps,
            fill=s.fill,
            base=context.clean,
            batch_size=s.batch_size,
        ).scores


@register_measure("insertion")
class Insertion(_Curve):
    """Insertion AUC (RISE): the probability as the most relevant pixels are put back."""

    columns = (("Insertion AUC", "higher", "{:.3f}"),)

    def measure(self, context: Context) -> Tensor:
        s = context.settings
        return metrics.insertion(
            context.model,
            context.x,
            context.explanation,
            steps=s.steps,
            base=context.clean,
            batch_size=s.batch_size,
        ).scores


@register_measure("road")
class Road(Measure):
    """ROAD (Rong et al. 2022): accuracy after noisy linear imputation, MoRF and LeRF."""

    columns = (("ROAD MoRF acc", "lower", "{:.3f}"), ("ROAD LeRF acc", "higher", "{:.3f}"))

    def measure(self, context: Context) -> tuple[Tensor, Tensor]:
        s = context.settings
        morf, lerf = (
            metrics.road(
                context.model,
                context.x,
                context.explanation,
                order=order,
                percentages=s.percentages,
                seed=s.seed,
                base=context.clean,
                batch_size=s.batch_size,
            ).correct
            for order in ("morf", "lerf")
        )
        return morf, lerf

    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        morf, lerf = (_cat([p[i] for p in self.done()]).float() for i in (0, 1))
        return {"ROAD MoRF acc": float(morf.mean()), "ROAD LeRF acc": float(lerf.mean())}

    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        morf, lerf = (_cat([p[i] for p in self.done()]).float().mean(dim=1) for i in (0, 1))
        return {"ROAD MoRF acc": _mean_of(morf), "ROAD LeRF acc": _mean_of(lerf)}

    def curves(self) -> dict[str, list[float]]:
        if not self.done():
            return {}
        morf, lerf = (_cat([p[i] for p in self.done()]).float() for i in (0, 1))
        return {"road_morf": morf.mean(0).tolist(), "road_lerf": lerf.mean(0).tolist()}


@register_measure("pointing")
class PointingGame(Measure):
    """Pointing game (Zhang et al. 2016), averaged over classes."""

    needs_regions = True
    columns = (("Pointing %", "higher", "{:.1f}"),)

    def measure(self, context: Context) -> metrics.Pointing:
        tolerance = context.settings.pointing_tolerance(context.x.shape[2:])
        assert context.masks is not None
        return metrics.pointing_game(context.explanation, context.masks, tolerance=tolerance)

    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        joined = metrics.Pointing(
            _cat([p.hits for p in self.done()]), _cat([p.classes for p in self.done()])
        )
        return {"Pointing %": 100 * joined.accuracy}

    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        hits = _cat([p.hits for p in self.done()]).float()
        classes = _cat([p.classes for p in self.done()])
        _, labels = classes.unique(return_inverse=True)
        onehot = torch.nn.functional.one_hot(labels).float()  # (n, classes present)

        def balanced(indices: Tensor) -> Tensor:  # hits per class, averaged over classes
            chosen = onehot[indices]  # (R, n, C)
            counts = chosen.sum(dim=1)
            per_class = (hits[indices][..., None] * chosen).sum(dim=1) / counts.clamp_min(1)
            present = (counts > 0).float()
            return 100 * (per_class * present).sum(dim=1) / present.sum(dim=1)

        return {"Pointing %": (len(hits), balanced)}


@register_measure("energy")
class Energy(Measure):
    """Energy-based pointing game: the share of the map inside the object's box."""

    needs_regions = True
    columns = (("Energy %", "higher", "{:.1f}"),)

    def measure(self, context: Context) -> Tensor:
        assert context.masks is not None
        boxes = metrics.masks_to_boxes(context.masks)
        return metrics.energy_pointing_game(context.explanation, boxes)

    def summary(self) -> dict[str, float]:
        return {"Energy %": 100 * float(_cat(self.done()).mean())} if self.done() else {}

    def statistics(self) -> dict[str, Statistic]:
        return {"Energy %": _mean_of(_cat(self.done()), 100)} if self.done() else {}


@register_measure("boxacc")
class BoxAccuracy(Measure):
    """MaxBoxAcc (Choe et al. 2020): the best threshold's share of boxes with IoU >= 0.5."""

    needs_regions = True
    columns = (("MaxBoxAcc %", "higher", "{:.1f}"),)

    def measure(self, context: Context) -> metrics.BoxAccuracy:
        assert context.masks is not None
        boxes = metrics.masks_to_boxes(context.masks)
        return metrics.box_accuracy(context.explanation, boxes, context.settings.thresholds)

    def _joined(self) -> metrics.BoxAccuracy:
        parts = self.done()
        return metrics.BoxAccuracy(parts[0].thresholds, _cat([p.hits for p in parts]), 0.5)

    def summary(self) -> dict[str, float]:
        return {"MaxBoxAcc %": 100 * self._joined().max_box_accuracy} if self.done() else {}

    def info(self) -> dict[str, Any]:
        return (
            {"box_best_threshold": round(self._joined().best_threshold, 4)} if self.done() else {}
        )

    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        hits = self._joined().hits.float()  # (n, thresholds)

        def best(indices: Tensor) -> Tensor:  # the best threshold of each resample
            return 100 * hits[indices].mean(dim=1).max(dim=1).values

        return {"MaxBoxAcc %": (len(hits), best)}


@register_measure("sanity")
class SanityCheck(Measure):
    """Cascading randomisation (Adebayo et al. 2018) on the first `sanity_images` inputs: rank
    correlation and SSIM with the original map, layer by layer from the output down."""

    columns = (("Sanity rho", "lower", "{:.3f}"), ("Sanity SSIM", "lower", "{:.3f}"))

    def __init__(self) -> None:
        super().__init__()
        self.result: metrics.Sanity | None = None

    def measure(self, context: Context) -> tuple[Tensor, Tensor] | None:
        wanted = context.settings.sanity_images - context.position  # the first N inputs
        return (context.x[:wanted], context.labels[:wanted]) if wanted > 0 else None

    def finish(self, model: nn.Module, settings: Any, method: str, layer: LayerSpec) -> None:
        if self.done():
            device = next((p.device for p in model.parameters()), None)
            x, labels = (_cat([p[i] for p in self.done()]).to(device) for i in (0, 1))
            self.result = metrics.cascading_randomisation(
                model, x, method, labels, seed=settings.seed, layer=layer
            )

    def summary(self) -> dict[str, float]:
        if self.result is None:
            return {}
        return {
            "Sanity rho": float(self.result.mean_spearman.mean()),
            "Sanity SSIM": float(self.result.mean_ssim.mean()),
        }

    def statistics(self) -> dict[str, Statistic]:
        if self.result is None:
            return {}
        return {
            "Sanity rho": _mean_of(self.result.spearman.mean(dim=0)),
            "Sanity SSIM": _mean_of(self.result.ssim.mean(dim=0)),
        }

    def details(self) -> dict[str, list[Any]]:
        assert self.result is not None
        return {
            "steps": self.result.steps,
            "spearman": self.result.mean_spearman.tolist(),
            "ssim": self.result.mean_ssim.tolist(),
        }
