"""What an evaluation measured, as a `Report`: the table (Markdown, CSV), the details (JSON) and
the plots, all read from the metric plug-ins' declarations."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from camkit.evaluation.bootstrap import Differences, Intervals, bootstrap
from camkit.evaluation.plugins import CATEGORIES, METRICS, Metric, Plot, Settings
from camkit.plot import line_chart

COST_COLUMN = ("Explain s", "lower", "{:.2f}")


def _by_category() -> list[type[Metric]]:
    """The registered metrics, grouped by category (`CATEGORIES`' order), each group in the
    order of registration."""
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(METRICS.values(), key=lambda cls: rank.get(cls.category, len(rank)))


def column_specs() -> dict[str, tuple[str, str]]:
    """Column -> (better direction, format), grouped by the metrics' categories.

    Examples:
        >>> column_specs()["Deletion AUC"]
        ('lower', '{:.3f}')
    """
    table = {c: (better, form) for cls in _by_category() for c, better, form in cls.columns}
    return {**table, COST_COLUMN[0]: COST_COLUMN[1:]}


def column_categories() -> dict[str, str]:
    """Column -> the category of the metric that fills it.

    Examples:
        >>> column_categories()["Sparseness"], column_categories()["Pointing %"]
        ('complexity', 'localisation')
    """
    return {c: cls.category for cls in _by_category() for c, _, _ in cls.columns}


def plots_of(metrics: Sequence[str]) -> list[Plot]:
    """The plots the named metrics declare (all registered ones, for ``METRICS``).

    Examples:
        >>> [p.name for p in plots_of(["deletion", "road"])]
        ['deletion', 'road_morf', 'road_lerf']
    """
    return [plot for name in metrics if name in METRICS for plot in METRICS[name].plots]


def _comparison_titles() -> dict[str, str]:
    return {c.name: c.title for cls in METRICS.values() if (c := cls.comparison) is not None}


@dataclass
class Report:
    """What `evaluate` measured: one row of summary figures per method, and the details.

    Attributes:
        rows: method -> column -> figure.
        curves: method -> curve name -> mean curve (for the plots).
        tables: comparison name -> method a -> method b -> figure (``"win"``: Win % of a over b).
        details: metric -> method -> what the metric adds (the sanity check's steps, ...).
        info: the protocol as run, the image counts, the costs.
        intervals: method -> column -> [low, high], the 95% bootstrap interval over images.
        differ: column -> method a -> method b -> whether a and b differ (paired bootstrap).

    Examples:
        >>> report = Report({"gradcam": {"Avg drop %": 12.5}}, info={"images": 4})
        >>> print(report.to_markdown().splitlines()[2])
        | gradcam | 12.50 |
    """

    rows: dict[str, dict[str, float]]
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    tables: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    details: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    intervals: Intervals = field(default_factory=dict)
    differ: Differences = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """The table's columns that have a figure, in the metrics' order."""
        present = {c for row in self.rows.values() for c in row}
        return [c for c in column_specs() if c in present]

    def to_markdown(self) -> str:
        """The table, with intervals, comparison tables and costs, in Markdown."""
        columns, spec = self.columns, column_specs()
        arrows = {"lower": " ↓", "higher": " ↑"}
        header = ["Method", *(c + arrows[spec[c][0]] for c in columns)]
        lines = _table_head(header)
        best = {c: self._best(c) for c in columns}
        for method, row in self.rows.items():
            cells = [self._cell(method, c, row.get(c), best[c]) for c in columns]
            lines.append(_table_row([method, *cells]))
        lines += self._kinds_note(columns)
        lines += self._mask_note()
        if self.info.get("left out"):
            lines += [
                "",
                "Left out, as they do not fit this model:",
                "",
                *(f"- {reason}" for reason in self.info["left out"]),
            ]
        if self.intervals:
            lines += [
                "",
                f"± half the 95% bootstrap interval over images ("
                f"{self.info.get('bootstrap', {}).get('resamples', '?')} resamples, "
                "seeded); * differs from the column's best method (paired bootstrap, "
                "95%).",
            ]
        titles = _comparison_titles()
        for name, table in self.tables.items():
            lines += ["", titles.get(name, name), "", *_square_table(table)]
        lines += self._cost_lines()
        return "\n".join(lines) + "\n"

    @staticmethod
    def _kinds_note(columns: Sequence[str]) -> list[str]:
        """Which columns are of which kind (↑ higher is better, ↓ lower), when of several."""
        kinds: dict[str, list[str]] = {}
        for column, kind in column_categories().items():
            if column in columns:
                kinds.setdefault(kind, []).append(column)
        if len(kinds) < 2:
            return []
        said = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in kinds.items())
        return ["", f"Columns by kind ({said}). ↑ higher is better, ↓ lower is better."]

    def _mask_note(self) -> list[str]:
        """Which images the localisation columns count, when not all had a mask."""
        regional = [c for cls in METRICS.values() if cls.needs_masks for c, _, _ in cls.columns]
        shown = [c for c in self.columns if c in regional]
        masked, images = self.info.get("masked_images"), self.info.get("images")
        if not shown or masked is None or masked == images:
            return []
        return [
            "",
            f"{', '.join(shown)}: on the {masked} of {images} images that have an object mask.",
        ]

    def _cost_lines(self) -> list[str]:
        """Seconds per method and metric, and the model passes they made."""
        seconds, passes = self.info.get("seconds_per_task"), self.info.get("passes")
        if not seconds or not passes:
            return []
        tasks = list(next(iter(seconds.values())))
        header = ["Method", *(f"{t} s" for t in tasks), "forward passes", "images", "backward"]
        lines = ["", "Cost: seconds per task, and the model's passes", "", *_table_head(header)]
        for method, spent in seconds.items():
            count = passes[method]
            cells = [f"{spent[t]:.2f}" for t in tasks]
            cells += [str(count["forward"]), str(count["forward_images"]), str(count["backward"])]
            lines.append(_table_row([method, *cells]))
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
        """One row per method: every column, then each interval's low and high."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        bounded = [c for c in self.columns if any(c in i for i in self.intervals.values())]
        writer.writerow(
            ["method", *self.columns, *(f"{c} {e}" for c in bounded for e in ("low", "high"))]
        )
        for method, row in self.rows.items():
            limits = [self.intervals.get(method, {}).get(c, [None, None]) for c in bounded]
            writer.writerow(
                [
                    method,
                    *(_csv(row.get(c)) for c in self.columns),
                    *(_csv(v) for pair in limits for v in pair),
                ]
            )
        return buffer.getvalue()

    def to_json(self) -> str:
        """Everything the report holds."""
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def plots(self) -> list[tuple[str, Image.Image]]:
        """(name, chart) for each plot the evaluated metrics declare and have curves for."""
        charts = []
        for plot in plots_of(self.info.get("metrics", list(METRICS))):
            series = {m: c[plot.curve] for m, c in self.curves.items() if plot.curve in c}
            if not series:
                continue
            xs = plot.x(self.info, len(next(iter(series.values()))))
            title = plot.title.format(images=self.info.get("images", "?"))
            chart = line_chart(series, xs, title=title, xlabel=plot.xlabel, ylabel=plot.ylabel)
            charts.append((plot.name, chart))
        return charts


def _table_head(header: list[str]) -> list[str]:
    return [_table_row(header), "|" + "---|" * len(header)]


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _square_table(table: dict[str, dict[str, float]]) -> list[str]:
    names = list(table)
    lines = ["| | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for a in names:
        lines.append(_table_row([a, *("" if a == b else f"{table[a][b]:.1f}" for b in names)]))
    return lines


def _format(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    return column_specs()[column][1].format(value)


def _csv(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def build_report(
    plugins: dict[str, dict[str, Metric]],
    settings: Settings,
    images: int,
    size: tuple[int, ...],
    seconds: dict[str, dict[str, float]],
    backward: dict[str, int],
    forward: dict[str, list[int]],
) -> Report:
    """The report of the plug-ins' measurements (method -> metric -> plug-in)."""
    report = Report({}, info=_info(plugins, settings, images, size))
    for method, named in plugins.items():
        row: dict[str, float] = {}
        for name, plugin in named.items():
            row.update(plugin.summary())
            if plugin.curves():
                report.curves.setdefault(method, {}).update(plugin.curves())
            if plugin.details():
                report.details.setdefault(name, {})[method] = plugin.details()
        row[COST_COLUMN[0]] = seconds[method]["explain"]
        report.rows[method] = row
    report.tables = _comparisons(plugins)
    report.info["seconds_per_task"] = {
        m: {k: round(v, 3) for k, v in s.items()} for m, s in seconds.items()
    }
    report.info["passes"] = _passes(list(plugins), forward, backward)
    report.intervals, report.differ = bootstrap(plugins, settings.resamples, settings.seed)
    if report.intervals:
        report.info["bootstrap"] = {
            "resamples": settings.resamples,
            "seed": settings.seed,
            "level": 0.95,
        }
    return report


def _info(
    plugins: dict[str, dict[str, Metric]], settings: Settings, images: int, size: tuple[int, ...]
) -> dict[str, Any]:
    """The protocol as run: the metrics, the image count and size, each metric's own facts."""
    first = next(iter(plugins.values()), {})
    info: dict[str, Any] = {
        "images": images,
        "input_size": list(size),
        "metrics": [m for m in METRICS if m in first],
        "fill": torch.as_tensor(settings.fill).tolist(),
        "seed": settings.seed,
    }
    for plugin in first.values():
        info.update(plugin.info(settings, size))
    return info


def _comparisons(plugins: dict[str, dict[str, Metric]]) -> dict[str, dict[str, dict[str, float]]]:
    """Each comparing metric's methods-by-methods table, for two methods or more that it
    measured."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for name in next(iter(plugins.values()), {}):
        by_method = {m: named[name] for m, named in plugins.items() if named[name].done()}
        comparison = METRICS[name].comparison if name in METRICS else None
        if comparison is None or len(by_method) < 2:
            continue
        tables[comparison.name] = {
            a: {b: first.compare(second) for b, second in by_method.items()}
            for a, first in by_method.items()
        }
    return tables


def _passes(
    methods: list[str], forward: dict[str, list[int]], backward: dict[str, int]
) -> dict[str, dict[str, int]]:
    """Per method (and the shared clean pass): forward calls, images, backward passes."""
    passes = {
        m: {
            "forward": sum(v[0] for k, v in forward.items() if k.startswith(m + "/")),
            "forward_images": sum(v[1] for k, v in forward.items() if k.startswith(m + "/")),
            "backward": backward[m],
        }
        for m in methods
    }
    clean = forward.get("clean", [0, 0])
    passes["clean"] = {"forward": clean[0], "forward_images": clean[1], "backward": 0}
    return passes
