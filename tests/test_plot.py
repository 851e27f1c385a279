"""Line charts drawn with matplotlib: the lines are where the data say, in their colours."""

from __future__ import annotations

import pytest

from camkit.plot import PALETTE, _colour, draw, line_chart, y_range


def _near(image, point, colour, radius: int = 3, tolerance: int = 40) -> bool:
    """Whether a pixel within `radius` of `point` has (about) `colour`."""
    data = image.load()
    px, py = round(point[0]), round(point[1])
    for x in range(px - radius, px + radius + 1):
        for y in range(py - radius, py + radius + 1):
            inside = 0 <= x < image.width and 0 <= y < image.height
            if inside and all(abs(a - b) <= tolerance for a, b in zip(data[x, y], colour)):  # noqa: B905
                return True
    return False


def _pixel(figure_axes, x: float, y: float, height: int) -> tuple[float, float]:
    _, axes = figure_axes
    px, py = axes.transData.transform((x, y))
    return px, height - py  # matplotlib counts pixels from the bottom


def test_a_line_runs_between_its_points() -> None:
    kwargs = {"title": "t", "xlabel": "x", "ylabel": "y", "size": (400, 300)}
    chart = line_chart({"up": [0.0, 1.0]}, [0.0, 1.0], **kwargs)
    placed = draw({"up": [0.0, 1.0]}, [0.0, 1.0], **kwargs)
    assert chart.size == (400, 300)
    start, end = (_pixel(placed, x, x, 300) for x in (0.0, 1.0))
    assert start[0] < end[0]
    assert start[1] > end[1]
    for point in (start, end, ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)):
        assert _near(chart, point, PALETTE[0])
    assert not _near(chart, (start[0], end[1]), PALETTE[0])  # the top-left corner stays empty


def test_series_get_distinct_colours_and_a_legend() -> None:
    series = {f"m{i}": [0.1 * (i % 10), 0.05 * (i % 10)] for i in range(14)}
    chart = line_chart(series, [0.0, 1.0], title="t", xlabel="x", ylabel="y")
    colours = [_colour(i) for i in range(14)]
    assert len(set(colours)) == 14
    _, axes = draw(series, [0.0, 1.0], title="t", xlabel="x", ylabel="y")
    legend = axes.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(series)
    assert chart.mode == "RGB"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 1.0], (0.0, 1.0)),
        ([-0.5, 0.9], (-1.0, 1.0)),
        ([3.0, 3.0], (2.5, 3.5)),
        ([0.0, 5.0], (0.0, 5.0)),
    ],
)
def test_y_ranges(values, expected) -> None:
    assert y_range(values) == expected
    _, axes = draw({"s": values}, [1.0, 2.0], title="t", xlabel="x", ylabel="y")
    assert axes.get_ylim() == pytest.approx(expected)
