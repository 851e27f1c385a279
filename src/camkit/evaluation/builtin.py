"""The metrics `camkit evaluate` ships, as plug-ins (`camkit.evaluation.plugins`): the
mathematics is `camkit.metrics`; each class here says which figures, curves, settings and plots
the report takes from it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from typing_extensions import override

from camkit import metrics
from camkit.evaluation.plugins import (
    Comparison,
    Context,
    Load,
    Metric,
    PerImage,
    Plot,
    Setting,
    Settings,
    Statistic,
    cat,
    mean_of,
    register_metric,
)
from camkit.explanation import Explanation
from camkit.layers import LayerSpec

STEPS = Setting("steps", int, 16, "deletion/insertion steps", low=1, high=1024)


@register_metric("drop")
class Drop(Metric):
    """Average Drop % and Increase in Confidence % (Grad-CAM++ paper), and Win %: the share
    of images where one method's relative drop is smaller than another's."""

    category = "faithfulness"

    columns = (("Avg drop %", "lower", "{:.2f}"), ("Increase %", "higher", "{:.1f}"))
    comparison = Comparison(
        "win", "Win % (row beats column: smaller relative drop on the same image)"
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return 1.0  # the masked input

    @override
    def measure(self, context: Context) -> metrics.Confidence:
        settings = context.settings
        return metrics.confidence(
            context.model,
            context.x,
            context.explanation,
            fill=settings.fill,
            base=context.clean,
            rows_per_pass=settings.rows_per_pass,
        )

    def joined(self) -> metrics.Confidence:
        """The batches' scores, joined."""
        parts = self.done()
        return metrics.Confidence(cat([r.base for r in parts]), cat([r.masked for r in parts]))

    @override
    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        joined = self.joined()
        return {"Avg drop %": joined.average_drop, "Increase %": joined.increase_in_confidence}

    @override
    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        joined = self.joined()
        return {
            "Avg drop %": mean_of(joined.drop.clamp_min(0), 100),
            "Increase %": mean_of(joined.masked > joined.base, 100),
        }

    @override
    def compare(self, other: Metric) -> float:
        assert isinstance(other, Drop)
        return metrics.win_rate(self.joined().drop, other.joined().drop)


class _Curve(Metric):
    """Deletion or insertion: the class's probability per step, as pixels go or come back."""

    category = "faithfulness"

    settings = (STEPS,)
    removes: ClassVar[bool] = True  # deletion (pixels take the fill value); False: insertion

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.steps)  # one end of the curve is the clean pass

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        x, explanation = context.x, context.explanation
        common = {"steps": s.steps, "base": context.clean, "rows_per_pass": s.rows_per_pass}
        if self.removes:
            return metrics.deletion(context.model, x, explanation, fill=s.fill, **common).scores
        return metrics.insertion(context.model, x, explanation, **common).scores

    def curves(self) -> dict[str, list[float]]:
        return {self.name: cat(self.done()).mean(dim=0).tolist()} if self.done() else {}

    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        return {self.columns[0][0]: float(metrics.auc(cat(self.done())).mean())}

    def statistics(self) -> dict[str, Statistic]:
        return {self.columns[0][0]: mean_of(metrics.auc(cat(self.done())))} if self.done() else {}

    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        return {"steps": settings.steps}


@register_metric("deletion")
class Deletion(_Curve):
    """Deletion AUC (RISE): the probability as the most relevant pixels are removed."""

    columns = (("Deletion AUC", "lower", "{:.3f}"),)
    plots = (
        Plot(
            "deletion",
            "deletion",
            "Deletion curves (mean over {images} images)",
            "share of pixels deleted",
            "probability",
        ),
    )


@register_metric("insertion")
class Insertion(_Curve):
    """Insertion AUC (RISE): the probability as the most relevant pixels are put back."""

    columns = (("Insertion AUC", "higher", "{:.3f}"),)
    removes = False
    plots = (
        Plot(
            "insertion",
            "insertion",
            "Insertion curves (mean over {images} images)",
            "share of pixels inserted",
            "probability",
        ),
    )


@register_metric("road")
class RoadAccuracy(Metric):
    """ROAD (Rong et al. 2022): accuracy after noisy linear imputation, MoRF and LeRF."""

    category = "faithfulness"

    columns = (("ROAD MoRF acc", "lower", "{:.3f}"), ("ROAD LeRF acc", "higher", "{:.3f}"))
    settings = (
        Setting(
            "percentages",
            tuple,
            (10, 30, 50, 70, 90),
            "ROAD's shares of pixels removed, %",
            flag=False,
        ),
    )
    plots = tuple(
        Plot(
            f"road_{order}",
            f"road_{order}",
            f"ROAD {order.upper()}: accuracy after removing pixels",
            "% of pixels removed",
            "accuracy",
            lambda info, _n: [float(p) for p in info["road_percentages"]],
        )
        for order in ("morf", "lerf")
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return 2.0 * len(settings.percentages)  # each share, both orders

    @override
    def seconds(self, x: Tensor, settings: Settings) -> float:
        # The imputation: half of the pixels of a few inputs, timed (its cost grows with the
        # pixels, not with the model).
        sample = x[:4]
        removed = torch.rand(sample.shape[0], *sample.shape[2:], device=x.device) < 0.5
        started = time.perf_counter()
        metrics.impute(sample, removed)
        return (time.perf_counter() - started) / len(sample) * 2 * len(settings.percentages)

    @override
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
                rows_per_pass=s.rows_per_pass,
            ).correct
            for order in ("morf", "lerf")
        )
        return morf, lerf

    @override
    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        morf, lerf = (cat([p[i] for p in self.done()]).float() for i in (0, 1))
        return {"ROAD MoRF acc": float(morf.mean()), "ROAD LeRF acc": float(lerf.mean())}

    @override
    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        morf, lerf = (cat([p[i] for p in self.done()]).float().mean(dim=1) for i in (0, 1))
        return {"ROAD MoRF acc": mean_of(morf), "ROAD LeRF acc": mean_of(lerf)}

    @override
    def curves(self) -> dict[str, list[float]]:
        if not self.done():
            return {}
        morf, lerf = (cat([p[i] for p in self.done()]).float() for i in (0, 1))
        return {"road_morf": morf.mean(0).tolist(), "road_lerf": lerf.mean(0).tolist()}

    @override
    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        return {"road_percentages": list(settings.percentages)}


@register_metric("pointing")
class PointingGame(Metric):
    """Pointing game (Zhang et al. 2016), averaged over classes."""

    category = "localisation"

    needs_masks = True
    columns = (("Pointing %", "higher", "{:.1f}"),)
    settings = (
        Setting(
            "tolerance", float, None, "pointing game, pixels (default: 15 at 224, scaled)", low=0.0
        ),
    )

    @override
    def measure(self, context: Context) -> metrics.Pointing:
        tolerance = context.settings.pointing_tolerance(context.x.shape[2:])
        assert context.masks is not None
        return metrics.pointing_game(context.explanation, context.masks, tolerance=tolerance)

    @override
    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        joined = metrics.Pointing(
            cat([p.hits for p in self.done()]), cat([p.classes for p in self.done()])
        )
        return {"Pointing %": 100 * joined.accuracy}

    @override
    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        hits = cat([p.hits for p in self.done()]).float()
        classes = cat([p.classes for p in self.done()])
        _, labels = classes.unique(return_inverse=True)
        onehot = torch.nn.functional.one_hot(labels).float()  # (n, classes present)

        def balanced(indices: Tensor) -> Tensor:  # hits per class, averaged over classes
            chosen = onehot[indices]  # (R, n, C)
            counts = chosen.sum(dim=1)
            per_class = (hits[indices][..., None] * chosen).sum(dim=1) / counts.clamp_min(1)
            present = (counts > 0).float()
            return 100 * (per_class * present).sum(dim=1) / present.sum(dim=1)

        return {"Pointing %": (len(hits), balanced)}

    @override
    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        return {"pointing_tolerance_px": settings.pointing_tolerance(size) if size else None}


@register_metric("energy")
class Energy(PerImage):
    """Energy-based pointing game: the share of the map inside the object's box."""

    category = "localisation"
    needs_masks = True
    columns = (("Energy %", "higher", "{:.1f}"),)
    scale = 100.0

    @override
    def measure(self, context: Context) -> Tensor:
        assert context.masks is not None
        boxes = metrics.masks_to_boxes(context.masks)
        return metrics.energy_pointing_game(context.explanation, boxes)


@register_metric("boxacc")
class MaxBoxAccuracy(Metric):
    """MaxBoxAcc (Choe et al. 2020): the best threshold's share of boxes with IoU >= 0.5."""

    category = "localisation"

    needs_masks = True
    columns = (("MaxBoxAcc %", "higher", "{:.1f}"),)
    settings = (
        Setting(
            "thresholds",
            Tensor,
            lambda: metrics.default_thresholds(0.05),
            "MaxBoxAcc's map thresholds",
            flag=False,
        ),
    )

    @override
    def measure(self, context: Context) -> metrics.BoxAccuracy:
        assert context.masks is not None
        boxes = metrics.masks_to_boxes(context.masks)
        return metrics.box_accuracy(context.explanation, boxes, context.settings.thresholds)

    def _joined(self) -> metrics.BoxAccuracy:
        parts = self.done()
        return metrics.BoxAccuracy(parts[0].thresholds, cat([p.hits for p in parts]), 0.5)

    @override
    def summary(self) -> dict[str, float]:
        return {"MaxBoxAcc %": 100 * self._joined().max_box_accuracy} if self.done() else {}

    @override
    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        return {"box_thresholds": [round(t, 4) for t in settings.thresholds.tolist()]}

    @override
    def details(self) -> dict[str, Any]:
        return {"best_threshold": round(self._joined().best_threshold, 4)} if self.done() else {}

    @override
    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        hits = self._joined().hits.float()  # (n, thresholds)

        def best(indices: Tensor) -> Tensor:  # the best threshold of each resample
            return 100 * hits[indices].mean(dim=1).max(dim=1).values

        return {"MaxBoxAcc %": (len(hits), best)}


COSTLY_PASSES = 8
"""Passes per input above which a method's sanity check takes `sanity_costly_images` images."""


@register_metric("sanity")
class SanityCheck(Metric):
    """Cascading randomisation (Adebayo et al. 2018) on the first `sanity_images` inputs: rank
    correlation and SSIM with the original map, layer by layer from the output down.

    A method whose explanation costs more than 8 passes an input (Score-CAM, SESS, ...) is
    checked on the first `sanity_costly_images` inputs: every randomisation step explains them
    again. The report's details say how many images each method's check used. The original
    maps are those the evaluation made, with the method's options."""

    category = "randomisation"
    needs = ("re-explanations", "a randomised model")

    columns = (("Sanity rho", "lower", "{:.3f}"), ("Sanity SSIM", "lower", "{:.3f}"))
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("sanity_images", int, 16, "images for the randomisation check", low=0, high=1024),
        Setting(
            "sanity_costly_images",
            int,
            4,
            "images for the randomisation check of a "
            f"method of more than {COSTLY_PASSES} passes an input (Score-CAM, SESS, ...)",
            low=0,
            high=1024,
        ),
    )
    plots = tuple(
        Plot(
            f"sanity_{key}",
            f"sanity_{key}",
            f"Sanity check: {label} with the original map (1 = unchanged)",
            "layers randomised, from the output down",
            label,
            lambda _info, n: list(range(1, n + 1)),
        )
        for key, label in (("spearman", "Spearman rank correlation"), ("ssim", "SSIM"))
    )
    after_last_batch = True

    def __init__(self) -> None:
        super().__init__()
        self.result: metrics.Sanity | None = None

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        # Each randomisation step explains the checked images again.
        costly = load.explain > COSTLY_PASSES
        wanted = settings.sanity_costly_images if costly else settings.sanity_images
        checked = min(load.images, int(wanted))
        return load.steps * checked * load.explain / max(1, load.images)

    @override
    def measure(self, context: Context) -> _SanityPart | None:
        s = context.settings
        images = s.sanity_images if context.passes <= COSTLY_PASSES else s.sanity_costly_images
        wanted = images - context.position  # the first N inputs
        if wanted <= 0:
            return None
        e = context.explanation
        return _SanityPart(
            context.x[:wanted],
            context.labels[:wanted],
            e.maps[:wanted, 0],
            e.layers,
            dict(context.options),
        )

    @override
    def finish(self, model: nn.Module, settings: Settings, method: str, layer: LayerSpec) -> None:
        parts: list[_SanityPart] = self.done()
        if parts:
            device = next((p.device for p in model.parameters()), None)
            x, labels, original = (
                cat([getattr(p, name) for p in parts]).to(device)
                for name in ("x", "labels", "maps")
            )
            # The original maps, with the layers and classes they explain (names as the method
            # gave them: "input" for a map drawn on the input); their scores are not needed.
            unknown = torch.full(labels.shape, float("nan"), device=labels.device)
            explained = Explanation(
                original[:, None], (), labels[:, None], unknown, None, parts[0].layers, method
            )
            self.result = metrics.cascading_randomisation(
                model,
                x,
                method,
                seed=settings.seed,
                original=explained,
                **self.protocol(settings),
                **parts[0].options,
            )

    def protocol(self, settings: Settings) -> dict[str, Any]:
        """How a variant randomises (`cascading_randomisation`'s keywords): cascading here."""
        return {}

    @override
    def summary(self) -> dict[str, float]:
        if self.result is None:
            return {}
        (rho, _, _), (similarity, _, _) = self.columns
        return {
            rho: float(self.result.mean_spearman.mean()),
            similarity: float(self.result.mean_ssim.mean()),
        }

    @override
    def statistics(self) -> dict[str, Statistic]:
        if self.result is None:
            return {}
        (rho, _, _), (similarity, _, _) = self.columns
        return {
            rho: mean_of(self.result.spearman.mean(dim=0)),
            similarity: mean_of(self.result.ssim.mean(dim=0)),
        }

    @override
    def curves(self) -> dict[str, list[float]]:
        if self.result is None:
            return {}
        spearman, similarity = (plot.curve for plot in self.plots)
        return {
            spearman: self.result.mean_spearman.tolist(),
            similarity: self.result.mean_ssim.tolist(),
        }

    @override
    def details(self) -> dict[str, Any]:
        if self.result is None:
            return {}
        return {"steps": self.result.steps, "sanity_images": self.result.spearman.shape[1]}

    @override
    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        # The first method's count; each method's own is in the details.
        return {"sanity_images": sum(len(p.x) for p in self.done())}


@dataclass(frozen=True)
class _SanityPart:
    """A batch's share of the sanity check: its first inputs, classes and original maps, the
    layers explained and the method's options."""

    x: Tensor
    labels: Tensor
    maps: Tensor
    layers: tuple[str, ...]
    options: dict[str, Any]
