"""What a metric plug-in is: one class that declares its settings, columns, curves, plots, the
per-image statistic its intervals are drawn from, and whether it compares methods.

The evaluation loop (`camkit.evaluation.loop`) knows no metric by name: everything it does with
one comes from these declarations, and `camkit evaluate` turns the settings into flags and range
checks. A new metric is one class:

    >>> import torch
    >>> from camkit.evaluation import METRICS, Metric, Setting, register_metric, unregister_metric
    >>> @register_metric("top-share")
    ... class TopShare(Metric):
    ...     columns = (("Top share %", "higher", "{:.1f}"),)
    ...     settings = (Setting("top_level", float, 1.0, "map value that counts as the top",
    ...                         low=0.0, high=1.0),)
    ...     def measure(self, context):
    ...         maps = context.explanation.maps[:, 0].flatten(1)
    ...         return (maps >= context.settings.top_level).float().mean(dim=1)
    ...     def summary(self):
    ...         return {"Top share %": 100 * float(torch.cat(self.done()).mean())}
    >>> "top-share" in METRICS
    True
    >>> unregister_metric("top-share")
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn
from typing_extensions import override

from camkit.errors import CamkitWarning
from camkit.explanation import Explanation
from camkit.layers import LayerSpec
from camkit.methods import method_class
from camkit.registry import adder
from camkit.seeds import batch_seed

Statistic = tuple[int, Callable[[Tensor], Tensor]]
"""(image count n, f): ``f(indices)`` recomputes a column's figure for each row of resampled
image indices, (R, n) -> (R,): the bootstrap draws the intervals with it."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One parameter of a metric's protocol: it becomes a field of `Settings`, a flag of
    `camkit evaluate` (``--name-with-dashes``, unless `flag` is False) and a range check. A
    `default` that is a function is called for each `Settings` (a tensor of its own).

    Examples:
        >>> Setting("steps", int, 16, "deletion/insertion steps", low=1, high=1024).check(0)
        Traceback (most recent call last):
        ...
        ValueError: steps 0: must be at least 1 (deletion/insertion steps)
    """

    name: str
    kind: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    flag: bool = True

    def check(self, value: object, label: str = "") -> None:
        """A `ValueError` naming the setting (as `label`, default its name) when `value` is
        out of its range."""
        name = label or self.name
        if (
            self.kind in (int, float)
            and value is not None
            and (not isinstance(value, (int, float)) or isinstance(value, bool))
        ):
            raise ValueError(f"{name} {value!r}: must be a number ({self.help})")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        if not math.isfinite(value):
            raise ValueError(f"{name} {value}: must be a finite number ({self.help})")
        if self.high is not None and not value <= self.high:  # NaN fails too
            raise ValueError(f"{name} {value}: at most {self.high:g} ({self.help})")
        if self.low is not None and not value >= self.low:
            raise ValueError(f"{name} {value}: must be at least {self.low:g} ({self.help})")


@dataclasses.dataclass(frozen=True)
class Plot:
    """A chart of one of a metric's curves: one line per method, written as ``name``.png.

    `x` gives the x values for a curve of n points from the report's info (default: the share
    0..1 of the curve's steps); `title` may name ``{images}``.

    Examples:
        >>> plot = Plot("deletion", "deletion", "Deletion", "share deleted", "probability")
        >>> plot.x({}, 5)
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """

    name: str
    curve: str
    title: str
    xlabel: str
    ylabel: str
    x: Callable[[Mapping[str, Any], int], list[float]] = lambda _info, n: [
        i / (n - 1) if n > 1 else 0.0 for i in range(n)
    ]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A table of methods against methods that a metric fills: ``table[a][b]`` for each pair
    (`Metric.compare`), shown under `title` when two methods or more are evaluated.

    Examples:
        >>> METRICS["drop"].comparison.name
        'win'
    """

    name: str
    title: str


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
        options: the method's own options (``{"num_scales": 4}``), for a plug-in that
            explains again (the sanity check).
        passes: the passes through the model the explanation took per input (forward and
            backward, as counted): what a plug-in that explains again may scale its work by.

    Examples:
        >>> import torch, camkit
        >>> from camkit.evaluation import Settings
        >>> from camkit.models import load_shapes_model
        >>> from camkit.data import ShapesDataset
        >>> model, data = load_shapes_model(), ShapesDataset(2, seed=1).stack()
        >>> x, labels = data["image"], data["label"]
        >>> explanation = camkit.CAM(model)(x, labels)
        >>> context = Context(model, x, labels, data["mask"], explanation, torch.rand(2, 6),
        ...                   Settings(), "cam", None, masked=torch.tensor([True, False]))
        >>> context.with_masks().x.shape[0]  # the mask metrics see the one row with a mask
        1
    """

    model: nn.Module
    x: Tensor
    labels: Tensor
    masks: Tensor | None
    explanation: Explanation
    clean: Tensor
    settings: Settings
    method: str
    layer: LayerSpec
    position: int = 0
    masked: Tensor | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    passes: float = 2.0

    def generator(self) -> torch.Generator:
        """A generator on the batch's device seeded by the run's seed and the batch's place:
        every method of a batch draws the same noise, subsets or classes (paired figures)."""
        drawn = torch.Generator(device=self.x.device)
        drawn.manual_seed(batch_seed(self.settings.seed, self.position))
        return drawn

    def explain_again(self, model: nn.Module | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """The method as it explained this batch (its options and layers), as (inputs (N, C,
        *spatial), targets (N,)) -> maps (N, *spatial): for a plug-in that explains perturbed
        inputs or other classes, many at once, or (`model`) a changed copy of the model with
        the same layer names. A constant map there is an answer the metric counts, not a
        warning for the user."""
        e = self.explanation
        explainer = method_class(self.method)(
            self.model if model is None else model, list(e.layers) or self.layer, **self.options
        )

        def explain(inputs: Tensor, targets: Tensor) -> Tensor:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CamkitWarning)
                return explainer(inputs, targets).maps[:, 0]

        return explain

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
        return dataclasses.replace(
            self,
            x=self.x[rows],
            labels=self.labels[rows],
            masks=self.masks[rows],
            explanation=explanation,
            clean=self.clean[rows],
            masked=None,
        )


@dataclasses.dataclass(frozen=True)
class Load:
    """What a metric's passes depend on besides its settings.

    Attributes:
        images: the inputs evaluated.
        explain: the passes per input of the method's explanation.
        steps: the model's randomisation steps (the sanity check's cascade).
        size: the inputs' spatial size, where known (metrics of patches count them).

    Examples:
        >>> from camkit.evaluation import Settings
        >>> load = Load(images=50, explain=2.0, steps=7)  # Grad-CAM on the bundled model
        >>> METRICS["deletion"]().passes(Settings(steps=16), load)
        16.0
    """

    images: int
    explain: float
    steps: int
    size: tuple[int, ...] = ()


NEEDS = ("re-explanations", "a randomised model", "another class")
"""What a metric may need beyond the inputs, their labels and the maps (object masks are
`Metric.needs_masks`): the method run again on other inputs or classes, a randomised copy of
the model, a model of two classes or more."""

CATEGORIES = (
    "faithfulness",
    "robustness",
    "localisation",
    "complexity",
    "randomisation",
    "axiomatic",
    "other",
)
"""The kinds of metric, as Quantus groups them; the report's columns come in this order."""


class Metric:
    """Base of a metric plug-in; one instance per evaluated method.

    Declarations (class attributes): `category` (one of `CATEGORIES`); `columns` (name, better
    "lower"/"higher", format) of the table; `settings`; `plots`; `comparison` (a
    methods-by-methods table, or None); `needs_masks` (it measures only images with an object
    mask); `after_last_batch` (its `finish` does the work, so an interrupted run leaves it
    out); `default` (False: run only when named or with ``--metrics all``, for a metric whose
    passes would dominate the default run); its cost is `passes` (forward passes per input)
    and `seconds` (work beside them).

    Examples:
        >>> sorted(METRICS["road"]().curves())  # no batch measured yet: no curves
        []
        >>> METRICS["pointing"].needs_masks, METRICS["sanity"].after_last_batch
        (True, True)
    """

    name: ClassVar[str] = ""
    category: ClassVar[str] = "other"
    default: ClassVar[bool] = True
    columns: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    settings: ClassVar[tuple[Setting, ...]] = ()
    plots: ClassVar[tuple[Plot, ...]] = ()
    comparison: ClassVar[Comparison | None] = None
    needs_masks: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()  # beyond masks: see NEEDS
    after_last_batch: ClassVar[bool] = False

    @classmethod
    def describe(cls, settings: Settings, load: Load) -> str:
        """One line: the metric's kind, its columns with their direction, what it needs and
        its cost in passes per input.

        Examples:
            >>> from camkit.evaluation import Settings
            >>> METRICS["deletion"].describe(Settings(), Load(50, 2.0, 7))
            'deletion (faithfulness): Deletion AUC ↓; passes per input: 16'
        """
        arrows = {"higher": "↑", "lower": "↓"}
        columns = ", ".join(f"{name} {arrows[better]}" for name, better, _ in cls.columns)
        needs = (("object masks",) if cls.needs_masks else ()) + cls.needs
        said = f"; needs {', '.join(needs)}" if needs else ""
        passes = cls().passes(settings, load)
        return f"{cls.name} ({cls.category}): {columns}{said}; passes per input: {passes:g}"

    def __init__(self) -> None:
        self.parts: list[Any] = []  # one entry per batch seen (None: the batch had no masks)

    def part(self, context: Context) -> object:
        """One batch's part, kept by nothing: the loop measures batches in any process and
        appends them in order. A mask metric measures the rows with a mask (None: the batch
        has none)."""
        if not self.needs_masks:
            return self.measure(context)
        regional = context.with_masks()
        return None if regional is None else self.measure(regional)

    def measure(self, context: Context) -> object:
        """The per-input results of one batch."""
        raise NotImplementedError

    def done(self) -> list[Any]:
        """The results of the batches measured."""
        return [p for p in self.parts if p is not None]

    def finish(self, model: nn.Module, settings: Settings, method: str, layer: LayerSpec) -> None:
        """Work after the last batch (default: none)."""

    def passes(self, settings: Settings, load: Load) -> float:
        """About how many forward passes of the model the metric makes per evaluated input,
        beyond the clean pass all share (default: none): what an evaluation's estimate of its
        time is made of."""
        return 0.0

    def seconds(self, x: Tensor, settings: Settings) -> float:
        """Seconds per input of the metric's work outside the model, timed on the inputs `x`
        (default: none)."""
        return 0.0

    def summary(self) -> dict[str, float]:
        """The table's figures for this method (columns absent when nothing was measured)."""
        raise NotImplementedError

    def curves(self) -> dict[str, list[float]]:
        """Mean curves for the plots (default: none)."""
        return {}

    def statistics(self) -> dict[str, Statistic]:
        """Column -> `Statistic`, for the bootstrap intervals and paired differences (default:
        none)."""
        return {}

    def compare(self, other: Metric) -> float:
        """This method's figure against another method's, for the `comparison` table."""
        raise NotImplementedError

    def info(self, settings: Settings, size: Sequence[int]) -> dict[str, Any]:
        """Facts for the report's info: the protocol as run (default: none)."""
        return {}

    def details(self) -> dict[str, Any]:
        """Per-method details for the report (default: none)."""
        return {}


_REGISTRY: dict[str, type[Metric]] = {}
METRICS: Mapping[str, type[Metric]] = MappingProxyType(_REGISTRY)
"""Metric name -> plug-in class, in the order of the report's columns."""

M = TypeVar("M", bound=type[Metric])


def register_metric(name: str) -> Callable[[M], M]:
    """Class decorator: make a plug-in available to `evaluate` and `camkit evaluate --metrics`.

    Examples:
        >>> @register_metric("blank")
        ... class Blank(Metric):
        ...     pass
        >>> "blank" in METRICS
        True
        >>> unregister_metric("blank")
    """
    return adder(_REGISTRY, "metric", name)


def unregister_metric(name: str) -> None:
    """Remove a plug-in added with `register_metric` (tests and examples clean up with it).

    Examples:
        >>> unregister_metric("never-registered")  # nothing to take out: no error
    """
    _REGISTRY.pop(name, None)


def default_metrics() -> list[str]:
    """The metrics a run without named metrics measures (`Metric.default`): the catalogue's
    others (re-explanations, many passes) run when named.

    Examples:
        >>> default_metrics()[:3]
        ['drop', 'deletion', 'insertion']
    """
    return [name for name, cls in METRICS.items() if cls.default]


def needing_masks() -> frozenset[str]:
    """The metrics that need object masks (run on the images that have them).

    Examples:
        >>> sorted(needing_masks())[:4]
        ['boxacc', 'energy', 'pointing', 'relevance-mass']
    """
    return frozenset(name for name, cls in METRICS.items() if cls.needs_masks)


def metric_settings() -> dict[str, Setting]:
    """Every registered metric's settings by name (a setting two metrics share, once).

    Examples:
        >>> metric_settings()["steps"].default
        16
    """
    return {s.name: s for cls in METRICS.values() for s in cls.settings}


SHARED = (
    Setting("seed", int, 0, "seeds ROAD's noise and the randomisation check"),
    Setting("resamples", int, 1000, "bootstrap resamples (0: none)", low=0, flag=False),
    Setting("rows_per_pass", int, 256, "perturbed inputs per forward pass", low=1, flag=False),
)
"""The settings every metric shares. The fill value is one too (see `Settings`)."""


class Settings:
    """Protocol parameters; the defaults follow the papers, scaled to the input size.

    fill: the value deleted pixels and Average Drop's masked-out pixels take, in the model's
    input space (a number, or a (C,) tensor per channel). The other keywords are the shared
    settings (`SHARED`: seed, resamples, rows_per_pass) and those of the registered metrics
    (`camkit.evaluation.metric_settings()`: steps, percentages, tolerance, thresholds,
    sanity_images); a name that is neither is a `TypeError`, a value out of range a `ValueError`.

    Examples:
        >>> Settings().steps, Settings(tolerance=6.0).pointing_tolerance((96, 96))
        (16, 6.0)
        >>> Settings(steps=0)
        Traceback (most recent call last):
        ...
        ValueError: steps 0: must be at least 1 (deletion/insertion steps)
    """

    def __init__(self, *, fill: float | Tensor = 0.0, **values: object) -> None:
        known = {s.name: s for s in SHARED} | metric_settings()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise TypeError(
                f"unknown setting(s) {', '.join(unknown)}; valid: fill, {', '.join(known)}"
            )
        self.fill = fill
        self._values: dict[str, Any] = {n: values.get(n, s.default) for n, s in known.items()}
        for name, value in self._values.items():
            known[name].check(value)
        for name, value in self._values.items():
            if callable(value):  # a default made per instance (a tensor of its own)
                self._values[name] = value()

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - any registered metric's setting
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"no setting {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Settings({shown})"

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, the fill value first."""
        return {"fill": self.fill, **self._values}

    def pointing_tolerance(self, size: Sequence[int]) -> float:
        """The pointing game's tolerance in pixels: the `tolerance` setting, or 15 px at 224
        scaled to the input's shorter side."""
        tolerance = self._values.get("tolerance")
        return float(tolerance) if tolerance is not None else 15.0 * min(size) / 224


class PerImage(Metric):
    """A metric whose columns are the means of numbers per image, `scale` times (100: a
    percentage), each with its interval over images: only `measure` is left to write, (B,) for
    one column or (B, columns) for several, in the order of `columns`. A column that is NaN
    for every image does not apply to the method and is left out of its row.

    Examples:
        >>> class Brightest(PerImage):
        ...     columns = (("Peak", "higher", "{:.2f}"),)
        ...     def measure(self, context):
        ...         return context.explanation.maps[:, 0].flatten(1).amax(dim=1)
    """

    scale: ClassVar[float] = 1.0

    def _joined(self) -> Tensor:
        return cat(self.done()).float().reshape(-1, len(self.columns))

    def _applying(self) -> list[tuple[int, str]]:
        """The columns with a number for some image: NaN for every image means the column
        does not apply to this method (a layer's metric for a method without one)."""
        joined = self._joined()
        return [
            (i, name)
            for i, (name, _, _) in enumerate(self.columns)
            if not bool(joined[:, i].isnan().all())
        ]

    @override
    def summary(self) -> dict[str, float]:
        if not self.done():
            return {}
        means = self._joined().mean(dim=0)
        return {name: self.scale * float(means[i]) for i, name in self._applying()}

    @override
    def statistics(self) -> dict[str, Statistic]:
        if not self.done():
            return {}
        joined = self._joined()
        return {name: mean_of(joined[:, i], self.scale) for i, name in self._applying()}


def mean_of(values: Tensor, scale: float = 1.0) -> Statistic:
    """The mean of per-image values, as a statistic."""
    values = values.float()
    return len(values), lambda indices: values[indices].mean(dim=1) * scale


def cat(parts: Sequence[Tensor]) -> Tensor:
    """The batches' per-image tensors, joined."""
    return torch.cat(list(parts))
