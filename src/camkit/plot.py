"""Line charts as PNG with Pillow alone: curves of the evaluation, no plotting library needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

# Twelve distinguishable colours (Tableau-like), cycled with a darker shade after that.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (0, 0, 0), (255, 187, 120),
]  # fmt: skip


def _colour(index: int) -> tuple[int, int, int]:
    r, g, b = PALETTE[index % len(PALETTE)]
    shade = 0.6 if (index // len(PALETTE)) % 2 else 1.0
    return round(r * shade), round(g * shade), round(b * shade)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def line_chart(
    series: Mapping[str, Sequence[float]],
    xs: Sequence[float],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (760, 440),
) -> Image.Image:
    """One line per named series over shared x values, with axes, ticks and a legend.

    The y range covers the data: [0, 1] for data within it, [-1, 1] for correlations.

    Example:
        >>> chart = line_chart({"a": [1.0, 0.5, 0.0]}, [0.0, 0.5, 1.0], title="t", xlabel="x",
        ...                    ylabel="y")
        >>> chart.size, chart.mode
        ((760, 440), 'RGB')
    """
    width, height = size
    font = ImageFont.load_default()
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 70, width - 170, 40, height - 55
    values = [v for line in series.values() for v in line] or [0.0, 1.0]
    low, high = min(values), max(values)
    if low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif low >= -1.0 and high <= 1.0:  # correlations
        low, high = -1.0, 1.0
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    x_low, x_high = min(xs), max(xs)
    x_span = (x_high - x_low) or 1.0

    def point(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_low) / x_span * (right - left),
            bottom - (y - low) / (high - low) * (bottom - top),
        )

    for y in _ticks(low, high):
        _, py = point(x_low, y)
        draw.line((left - 4, py, left, py), fill=(0, 0, 0))
        draw.line((left + 1, py, right - 1, py), fill=(235, 235, 235))
        draw.text((left - 8, py), f"{y:.2f}", fill=(0, 0, 0), font=font, anchor="rm")
    for x in xs if len(xs) <= 12 else _ticks(x_low, x_high):
        px, _ = point(x, low)
        draw.line((px, bottom, px, bottom + 4), fill=(0, 0, 0))
        draw.text((px, bottom + 8), f"{x:g}", fill=(0, 0, 0), font=font, anchor="mt")
    draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
    draw.text(((left + right) / 2, 14), title, fill=(0, 0, 0), font=font, anchor="mm")
    draw.text(((left + right) / 2, height - 18), xlabel, fill=(0, 0, 0), font=font, anchor="mm")
    draw.text((8, top - 20), ylabel, fill=(0, 0, 0), font=font, anchor="lm")
    for index, (name, line) in enumerate(series.items()):
        colour = _colour(index)
        points = [point(x, y) for x, y in zip(xs, line, strict=True)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points if len(points) <= 12 else []:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
        ly = top + 8 + 16 * index
        draw.line((right + 12, ly, right + 32, ly), fill=colour, width=3)
        draw.text((right + 38, ly), name, fill=(0, 0, 0), font=font, anchor="lm")
    return image
