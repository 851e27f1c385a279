"""Line charts drawn with Pillow: the lines are where the data say."""

from __future__ import annotations

from camkit.plot import PALETTE, _colour, line_chart


def _pixels(image, colour) -> list[tuple[int, int]]:
    width, height = image.size
    data = image.load()
    return [(x, y) for y in range(height) for x in range(width) if data[x, y] == colour]


def test_a_line_runs_between_its_points() -> None:
    chart = line_chart({"up": [0.0, 1.0]}, [0.0, 1.0], title="t", xlabel="x", ylabel="y",
                       size=(400, 300))  # fmt: skip
    drawn = [p for p in _pixels(chart, PALETTE[0]) if p[0] < 400 - 170]  # leave out the legend
    # the plot area is x in [70, 230], y in [40, 245]; [0, 1] maps onto it, rising to the right
    left = min(drawn)
    right = max(drawn)
    assert abs(left[0] - 70) <= 2 and abs(left[1] - 245) <= 2
    assert abs(right[0] - 230) <= 2 and abs(right[1] - 40) <= 2


def test_series_get_distinct_colours_and_a_legend() -> None:
    series = {f"m{i}": [0.1 * i, 0.05 * i] for i in range(14)}
    chart = line_chart(series, [0.0, 1.0], title="t", xlabel="x", ylabel="y")
    colours = [_colour(i) for i in range(14)]
    assert len(set(colours)) == 14
    assert all(_pixels(chart, c) for c in colours)


def test_constant_and_correlation_ranges() -> None:
    flat = line_chart({"c": [3.0, 3.0]}, [1.0, 2.0], title="t", xlabel="x", ylabel="y")
    assert _pixels(flat, PALETTE[0])
    negative = line_chart({"r": [-0.5, 0.9]}, [1.0, 2.0], title="t", xlabel="x", ylabel="y")
    assert _pixels(negative, PALETTE[0])
