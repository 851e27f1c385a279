"""Faithfulness metrics of the Quantus catalogue, as plug-ins (the mathematics:
`camkit.metrics.faithfulness`; deletion, insertion, Average Drop and ROAD are in `builtin`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from camkit.evaluation.plugins import (
    Context,
    Load,
    PerImage,
    Plot,
    Setting,
    Settings,
    cat,
    register_metric,
)
from camkit.metrics import stepwise
from camkit.metrics.confidence import adcc
from camkit.metrics.curves import auc
from camkit.metrics.faithfulness import (
    faithfulness_correlation,
    infidelity,
    sensitivity_n,
    subset_sizes,
    sufficiency,
)
from camkit.metrics.stepwise import irof
from camkit.metrics.superpixels import superpixels


@register_metric("faithfulness-correlation")
class FaithfulnessCorrelation(PerImage):
    """Faithfulness correlation (Bhatt et al., 2020): over `fc_runs` random subsets of
    `fc_subset` pixels, the Pearson correlation between the map's sum over a subset and the
    drop of the class's logit when the subset takes the fill value. Every method is measured on
    the same subsets of an image (paired). Quantus' `FaithfulnessCorrelation` with pixels as
    its features; not in the default run (`fc_runs` passes an input)."""

    category = "faithfulness"
    default = False
    columns = (("Faith. corr.", "higher", "{:.3f}"),)
    settings = (
        Setting(
            "fc_runs",
            int,
            100,
            "faithfulness correlation: random subsets per image (each a pass)",
            low=2,
            high=10_000,
        ),
        Setting(
            "fc_subset",
            int,
            224,
            "faithfulness correlation: pixels per subset (as Quantus)",
            low=1,
            high=2**31 - 1,
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.fc_runs)

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        maps = context.explanation.maps[:, 0]
        subset = min(s.fc_subset, maps[0].numel())
        return faithfulness_correlation(
            context.model,
            context.x,
            maps,
            context.labels,
            runs=s.fc_runs,
            subset=subset,
            fill=s.fill,
            generator=context.generator(),
            rows_per_pass=s.rows_per_pass,
        )


@register_metric("adcc")
class AverageDropCoherencyComplexity(PerImage):
    """ADCC (Poppi et al., 2021): the harmonic mean of coherency (the map against the method's
    map of the map-masked input), 1 - complexity (the map's mean) and 1 - average drop, each
    image's, in %; with its coherency and complexity. The masked input is ``x * map`` (the
    paper's; the fill value is not used). One more explanation and one pass an input."""

    category = "faithfulness"
    needs = ("re-explanations",)
    columns = (
        ("ADCC %", "higher", "{:.1f}"),
        ("Coherency %", "higher", "{:.1f}"),
        ("L1 complexity %", "lower", "{:.1f}"),
    )
    scale = 100.0

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return 1.0 + load.explain

    @override
    def measure(self, context: Context) -> Tensor:
        result = adcc(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.explain_again(),
            context.labels,
            base=context.clean,
            rows_per_pass=context.settings.rows_per_pass,
        )
        return torch.stack([result.score, result.coherency, result.complexity], dim=1)


GROUPS = Setting(
    "order_groups",
    int,
    16,
    "faithfulness estimate, monotonicity (correlation): "
    "groups of pixels in the map's order, each a pass (Quantus: one a value)",
    low=2,
    high=1_000_000,
)
PATCH = Setting(
    "patch",
    int,
    8,
    "region perturbation, selectivity: the side of the squares "
    "filled one by one, in pixels (as Quantus)",
    low=1,
    high=4096,
)


def _per_step(context: Context) -> int:
    """Pixels per group: the map's pixels over `order_groups`, rounded up."""
    pixels = int(context.explanation.maps[0, 0].numel())
    return math.ceil(pixels / min(int(context.settings.order_groups), pixels))


class _Ordered(PerImage):
    category = "faithfulness"
    default = False
    settings: ClassVar[tuple[Setting, ...]] = (GROUPS,)

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.order_groups)

    def common(self, context: Context) -> dict[str, Any]:
        s = context.settings
        return {"per_step": _per_step(context), "fill": s.fill, "rows_per_pass": s.rows_per_pass}


@register_metric("faithfulness-estimate")
class FaithfulnessEstimate(_Ordered):
    """Faithfulness estimate (Alvarez-Melis & Jaakkola, 2018): the Pearson correlation, over
    `order_groups` groups of pixels in the map's order, of the map's sum over a group and the
    drop of the class's logit when that group alone takes the fill value. Quantus'
    `FaithfulnessEstimate` with groups of pixels (Quantus: one channel value a group)."""

    columns = (("Faith. estimate", "higher", "{:.3f}"),)

    @override
    def measure(self, context: Context) -> Tensor:
        return stepwise.faithfulness_estimate(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            **self.common(context),
        )


@register_metric("monotonicity")
class Monotonicity(_Ordered):
    """Monotonicity (Arya et al., 2019): the share of images whose class probability never
    falls as `order_groups` groups of pixels are put back into an all-fill input, least
    relevant first. Quantus' `Monotonicity` as it is meant (0.6.0 never puts a pixel back and
    calls every map monotone: docs/concepts.md)."""

    columns = (("Monotone %", "higher", "{:.1f}"),)
    scale = 100.0

    @override
    def measure(self, context: Context) -> Tensor:
        return stepwise.monotonicity(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            **self.common(context),
        )


@register_metric("monotonicity-correlation")
class MonotonicityCorrelation(_Ordered):
    """Monotonicity correlation (Nguyen & Martinez, 2020): the Spearman correlation, over
    `order_groups` groups of pixels, of the map's sum over a group and the variance of the
    class probability when the group takes `mc_samples` uniform random values in [0, 1] (each
    a pass). Quantus' `MonotonicityCorrelation` (which draws 100 samples)."""

    columns = (("Monotonicity corr.", "higher", "{:.3f}"),)
    settings = (
        GROUPS,
        Setting(
            "mc_samples",
            int,
            10,
            "monotonicity correlation: random values each group takes, each a pass (Quantus: 100)",
            low=1,
            high=10_000,
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.order_groups * settings.mc_samples)

    @override
    def measure(self, context: Context) -> Tensor:
        common = self.common(context)
        del common["fill"]  # the groups take random values
        return stepwise.monotonicity_correlation(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            samples=context.settings.mc_samples,
            generator=context.generator(),
            **common,
        )


class _Curved(PerImage):
    """`measure` keeps each image's curve, `figure` makes the column's number of it; the
    report plots the mean curve."""

    category = "faithfulness"
    default = False

    def figure(self, curves: Tensor) -> Tensor:
        raise NotImplementedError

    @override
    def _joined(self) -> Tensor:
        return self.figure(cat(self.done()))[:, None]

    @override
    def curves(self) -> dict[str, list[float]]:
        return {self.name: cat(self.done()).mean(dim=0).tolist()} if self.done() else {}


class _Squares(_Curved):
    """A curve over squares filled one more per step, the largest map sum first."""

    @staticmethod
    def squares(settings: Settings, size: Sequence[int]) -> int:
        """How many `patch`-pixel squares cover an input of spatial `size`."""
        return math.prod(math.ceil(side / settings.patch) for side in size)


@register_metric("region-perturbation")
class RegionPerturbation(_Squares):
    """Region perturbation (Samek et al., 2017), most relevant first: AOPC, the mean drop of
    the class probability over the unperturbed input and `regions` steps, each filling one
    more `patch`-pixel square with the fill value. Quantus' `RegionPerturbation` (which
    returns the curve of drops)."""

    columns = (("AOPC", "higher", "{:.3f}"),)
    settings = (
        PATCH,
        Setting(
            "regions",
            int,
            100,
            "region perturbation: squares filled, one a step and a pass (at most all of them)",
            low=1,
            high=1_000_000,
        ),
    )
    plots = (
        Plot(
            "region_perturbation",
            "region-perturbation",
            "Region perturbation (mean over {images} images)",
            "squares filled",
            "drop of the probability",
            lambda _info, n: [float(i + 1) for i in range(n)],
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        if not load.size:
            return float(settings.regions)  # at most
        return float(min(settings.regions, self.squares(settings, load.size)))

    @override
    def figure(self, curves: Tensor) -> Tensor:
        return curves.sum(dim=1) / (curves.shape[1] + 1)

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        return stepwise.region_perturbation(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            patch=s.patch,
            regions=s.regions,
            fill=s.fill,
            rows_per_pass=s.rows_per_pass,
        )

    @override
    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        return {"regions": min(settings.regions, self.squares(settings, size))}


@register_metric("selectivity")
class Selectivity(_Squares):
    """Selectivity (Montavon et al., 2018): the area under the class probability as every
    `patch`-pixel square in turn, the largest map sum first, takes the fill value (one pass a
    square); on [0, 1], from the clean input. Lower: the map finds what the model needs
    first. Quantus' `Selectivity` (which returns the curve)."""

    columns = (("Selectivity AUC", "lower", "{:.3f}"),)
    settings = (PATCH,)
    plots = (
        Plot(
            "selectivity",
            "selectivity",
            "Selectivity (mean over {images} images)",
            "share of squares filled",
            "probability",
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        # the bundled model's 96 x 96 where the size is not known
        return float(self.squares(settings, load.size or (96, 96)))

    @override
    def figure(self, curves: Tensor) -> Tensor:
        return auc(curves)

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        return stepwise.selectivity(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            patch=s.patch,
            fill=s.fill,
            rows_per_pass=s.rows_per_pass,
        )


@register_metric("sensitivity-n")
class SensitivityN(_Curved):
    """Sensitivity-N (Ancona et al., 2018): the faithfulness correlation at `sn_sizes`
    subset sizes n, log-spaced from 1% to 80% of the pixels, over `sn_runs` random subsets
    each (a pass each); the column is its mean over n, the plot the curve. Quantus'
    `SensitivityN` computes another protocol and keeps only its first batch
    (docs/concepts.md)."""

    columns = (("Sensitivity-N", "higher", "{:.3f}"),)
    settings = (
        Setting(
            "sn_sizes",
            int,
            5,
            "sensitivity-n: subset sizes, log-spaced from 1 to 80 percent of the pixels",
            low=1,
            high=100,
        ),
        Setting(
            "sn_runs",
            int,
            20,
            "sensitivity-n: random subsets of each size, each a pass",
            low=2,
            high=10_000,
        ),
    )
    plots = (
        Plot(
            "sensitivity_n",
            "sensitivity-n",
            "Sensitivity-N (mean over {images} images)",
            "pixels in the subset",
            "correlation",
            lambda info, _n: [float(n) for n in info["sn_sizes"]],
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.sn_sizes * settings.sn_runs)

    @override
    def figure(self, curves: Tensor) -> Tensor:
        return curves.mean(dim=1)

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        maps = context.explanation.maps[:, 0]
        return sensitivity_n(
            context.model,
            context.x,
            maps,
            context.labels,
            sizes=subset_sizes(maps[0].numel(), s.sn_sizes),
            runs=s.sn_runs,
            fill=s.fill,
            generator=context.generator(),
            rows_per_pass=s.rows_per_pass,
        )

    @override
    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        return {"sn_sizes": subset_sizes(math.prod(size), settings.sn_sizes)}


@register_metric("infidelity")
class Infidelity(PerImage):
    """Infidelity (Yeh et al., 2019): the mean squared error, over `infidelity_samples`
    Gaussian perturbations I of `infidelity_std`, between the map's product with I (the map
    scaled by the factor that fits best: CAM maps have no scale of their own) and the drop of
    the class's logit at x - I. Lower is better. Captum's `infidelity(normalize=True)`;
    Quantus 0.6.0 removes squares in raster order instead (docs/concepts.md)."""

    category = "faithfulness"
    default = False
    columns = (("Infidelity", "lower", "{:.4g}"),)
    settings = (
        Setting(
            "infidelity_samples",
            int,
            10,
            "infidelity: noisy copies of each input, each a pass",
            low=1,
            high=10_000,
        ),
        Setting(
            "infidelity_std",
            float,
            0.1,
            "infidelity: the noise's standard deviation, in the model's input space",
            low=0.0,
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.infidelity_samples)

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        return infidelity(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            samples=s.infidelity_samples,
            std=s.infidelity_std,
            generator=context.generator(),
            rows_per_pass=s.rows_per_pass,
        )


@register_metric("sufficiency")
class Sufficiency(PerImage):
    """Sufficiency (Dasgupta et al., 2022): within each batch, an image's share of the images
    whose maps lie within `sufficiency_threshold` of its own (standardised Euclidean, over the
    largest) that the model predicts its class. It depends on the batch (`--batch-size`), as
    in Quantus' `Sufficiency`. No pass of its own."""

    category = "faithfulness"
    default = False
    columns = (("Sufficiency %", "higher", "{:.1f}"),)
    scale = 100.0
    settings = (
        Setting(
            "sufficiency_threshold",
            float,
            0.6,
            "sufficiency: the distance (0 to 1) within which two maps count as close",
            low=0.0,
            high=1.0,
        ),
    )

    @override
    def measure(self, context: Context) -> Tensor:
        return sufficiency(
            context.explanation.maps[:, 0],
            context.clean.argmax(dim=1),
            threshold=context.settings.sufficiency_threshold,
        )


@register_metric("irof")
class Irof(_Curved):
    """IROF (Rieger & Hansen, 2020): the input's superpixels (SLIC on the input's device,
    about `irof_segments` of them), ranked by their mean map value, take the fill value one
    more per step (a pass each); the area over the class probability relative to the clean
    one, per segment (0: nothing changes). Quantus' `IROF` (its area is not divided by the
    segments; it refuses colour inputs: docs/concepts.md)."""

    columns = (("IROF", "higher", "{:.3f}"),)
    settings = (
        Setting(
            "irof_segments",
            int,
            50,
            "IROF: superpixels per input, each a pass (Quantus: SLIC's 100)",
            low=2,
            high=10_000,
        ),
    )
    plots = (
        Plot(
            "irof",
            "irof",
            "IROF (mean over {images} images)",
            "superpixels filled",
            "probability / clean probability",
            lambda _info, n: [float(i + 1) for i in range(n)],
        ),
    )

    @override
    def passes(self, settings: Settings, load: Load) -> float:
        return float(settings.irof_segments)

    @override
    def figure(self, curves: Tensor) -> Tensor:
        return curves[:, 0]  # each row: its score, then its curve

    @override
    def curves(self) -> dict[str, list[float]]:
        return {self.name: cat(self.done())[:, 1:].mean(dim=0).tolist()} if self.done() else {}

    @override
    def measure(self, context: Context) -> Tensor:
        s = context.settings
        segments = superpixels(context.x, s.irof_segments)
        result = irof(
            context.model,
            context.x,
            context.explanation.maps[:, 0],
            context.labels,
            segments=segments,
            fill=s.fill,
            rows_per_pass=s.rows_per_pass,
        )
        # every batch's curves as long as the most segments asked for (the last value kept)
        curves = result.curves
        padded = curves[:, -1:].expand(-1, s.irof_segments - curves.shape[1])
        return torch.cat([result.score[:, None].float(), curves, padded], dim=1)
