"""Line charts as images, drawn with matplotlib (its object API and the Agg canvas: no pyplot,
no global figure state, safe from several threads)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:  # matplotlib is imported when a chart is drawn: 0.9 s of every start
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Twelve distinguishable colours (Tableau-like), cycled with a darker shade after that.
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (255, 187, 120),
]
DPI = 100


def _colour(index: int) -> tuple[int, int, int]:
    r, g, b = PALETTE[index % len(PALETTE)]
    shade = 0.6 if (index // len(PALETTE)) % 2 else 1.0
    return round(r * shade), round(g * shade), round(b * shade)


def y_range(values: Sequence[float]) -> tuple[float, float]:
    """[0, 1] for data within it, [-1, 1] for correlations, else the data's own range.

    Examples:
        >>> y_range([0.2, 0.9]), y_range([-0.3, 0.8]), y_range([2.0, 2.0])
        ((0.0, 1.0), (-1.0, 1.0), (1.5, 2.5))
    """
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    if low >= -1.0 and high <= 1.0:
        return -1.0, 1.0
    if high - low < 1e-12:
        return low - 0.5, high + 0.5
    return low, high


def draw(
    series: Mapping[str, Sequence[float]],
    xs: Sequence[float],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (760, 440),
) -> tuple[Figure, Axes]:
    """The chart as a matplotlib figure (drawn on an Agg canvas) and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, (name, line) in enumerate(series.items()):
        colour = tuple(c / 255 for c in _colour(index))
        marker = "o" if len(xs) <= 12 else None
        axes.plot(
            list(xs),
            list(line),
            color=colour,
            label=name,
            linewidth=1.6,
            marker=marker,
            markersize=3,
        )
    axes.set_ylim(*y_range([v for line in series.values() for v in line]))
    if len(xs) > 1:
        axes.set_xlim(min(xs), max(xs))
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_ylabel(ylabel, fontsize=9)
    axes.grid(color=(0.92, 0.92, 0.92))
    axes.tick_params(labelsize=8)
    if series:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    figure.subplots_adjust(left=0.09, right=0.76, top=0.91, bottom=0.13)
    return figure, axes


def line_chart(
    series: Mapping[str, Sequence[float]],
    xs: Sequence[float],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (760, 440),
) -> Image.Image:
    """One line per named series over shared x values, with axes, ticks and a legend, as an RGB
    image of `size` pixels. The y range covers the data (`y_range`).

    Examples:
        >>> chart = line_chart({"a": [1.0, 0.5, 0.0]}, [0.0, 0.5, 1.0], title="t", xlabel="x",
        ...                    ylabel="y")
        >>> chart.size, chart.mode
        ((760, 440), 'RGB')
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure, _ = draw(series, xs, title=title, xlabel=xlabel, ylabel=ylabel, size=size)
    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
