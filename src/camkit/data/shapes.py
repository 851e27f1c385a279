"""Procedural shapes with ground truth: images where the right answer to "where?" is known.

Each image shows one (or two) filled shapes of known class at a random position, scale,
rotation and colour, over a textured, cluttered background with distractor strokes and dots that
belong to no class. Every sample comes with its labels, pixel masks and boxes, and is a pure
function of (seed, index): the same on every machine and device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "star", "cross", "ring")

_SUPERSAMPLE = 2  # anti-aliased edges: render at twice the resolution, then average


def _regular(vertices: int, radius: float, phase: float = 0.0) -> Tensor:
    angles = torch.arange(vertices, dtype=torch.float64) * (2 * math.pi / vertices) + phase
    return torch.stack([angles.cos(), angles.sin()], dim=1) * radius


def _star() -> Tensor:
    radii = torch.tensor([1.1, 0.45] * 5, dtype=torch.float64)
    angles = torch.arange(10, dtype=torch.float64) * (math.pi / 5) - math.pi / 2
    return torch.stack([angles.cos(), angles.sin()], dim=1) * radii[:, None]


def _cross(half_width: float = 0.33) -> Tensor:
    w = half_width
    quarter = [(1.0, -w), (1.0, w), (w, w)]
    points = []
    for turn in range(4):  # the same arm rotated by 90 degrees four times
        c, s = round(math.cos(turn * math.pi / 2)), round(math.sin(turn * math.pi / 2))
        points += [(c * x - s * y, s * x + c * y) for x, y in quarter]
    return torch.tensor(points, dtype=torch.float64)


# Outlines in a unit frame, star-shaped around the origin (so a triangle fan fills them).
_POLYGONS: dict[str, Tensor] = {
    "square": _regular(4, 1.0, math.pi / 4),
    "triangle": _regular(3, 1.15, -math.pi / 2),
    "star": _star(),
    "cross": _cross(),
}


def _inside_fan(x: Tensor, y: Tensor, polygon: Tensor) -> Tensor:
    """Points inside a polygon that is star-shaped around the origin: the union of fan triangles."""
    poly = polygon.to(x)
    ax, ay = poly[:, 0], poly[:, 1]
    bx, by = poly.roll(-1, 0)[:, 0], poly.roll(-1, 0)[:, 1]
    px, py = x[..., None], y[..., None]
    orientation = torch.sign(ax * by - ay * bx)  # each fan triangle's winding
    left_of_a = (ax * py - ay * px) * orientation >= 0
    right_of_b = (px * by - py * bx) * orientation >= 0
    inside_edge = ((bx - ax) * (py - ay) - (by - ay) * (px - ax)) * orientation >= 0
    return (left_of_a & right_of_b & inside_edge).any(dim=-1)


def shape_coverage(
    label: int, size: tuple[int, int], centre: tuple[float, float], radius: float, angle: float
) -> Tensor:
    """Fraction of each pixel covered by the shape, (H, W) in [0, 1].

    Examples:
        >>> cover = shape_coverage(0, (9, 9), centre=(4.5, 4.5), radius=3.0, angle=0.0)
        >>> round(float(cover.sum()), 1)  # a disc of radius 3 has area 9 * pi = 28.3
        28.0
    """
    height, width = size
    n = _SUPERSAMPLE
    ys = (torch.arange(height * n, dtype=torch.float64) + 0.5) / n
    xs = (torch.arange(width * n, dtype=torch.float64) + 0.5) / n
    gy, gx = torch.meshgrid(ys - centre[1], xs - centre[0], indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    u = (cos * gx + sin * gy) / radius  # rotate into the shape's frame, unit radius
    v = (-sin * gx + cos * gy) / radius
    name = CLASSES[label]
    if name == "disc":
        inside = u.square() + v.square() <= 1
    elif name == "ring":
        r2 = u.square() + v.square()
        inside = (r2 <= 1) & (r2 >= 0.6**2)
    else:
        inside = _inside_fan(u, v, _POLYGONS[name])
    return F.avg_pool2d(inside.float()[None, None], n)[0, 0]


def _uniform(g: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(*shape, generator=g, dtype=torch.float64)


def _background(g: torch.Generator, height: int, width: int) -> Tensor:
    base = _uniform(g, 0.15, 0.85, 3, 1, 1)
    blotches = F.interpolate(
        torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64) * 0.12,
        size=(height, width),
        mode="bicubic",
        align_corners=False,
    )[0]
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    direction = float(_uniform(g, 0, math.pi, 1))
    period = float(_uniform(g, 4, 12, 1))
    stripes = torch.sin(
        (xx * math.cos(direction) + yy * math.sin(direction)) * 2 * math.pi / period
    )
    grain = torch.randn(1, height, width, generator=g, dtype=torch.float64) * 0.03
    return base + blotches + 0.04 * stripes + grain


def _distractors(g: torch.Generator, image: Tensor) -> Tensor:
    """Strokes and dots that belong to no class: thin, or far smaller than any shape."""
    _, height, width = image.shape
    scale = min(height, width)
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5,
        torch.arange(width, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    for _ in range(int(torch.randint(3, 8, (1,), generator=g))):
        colour = _uniform(g, 0, 1, 3, 1, 1)
        cx, cy = float(_uniform(g, 0, width, 1)), float(_uniform(g, 0, height, 1))
        if float(_uniform(g, 0, 1, 1)) < 0.6:  # a stroke
            angle = float(_uniform(g, 0, math.pi, 1))
            half_length = float(_uniform(g, 0.08, 0.25, 1)) * scale
            half_width = float(_uniform(g, 0.4, 1.0, 1))
            along = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
            across = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
            mark = (along.abs() <= half_length) & (across.abs() <= half_width)
        else:  # a dot
            radius = float(_uniform(g, 0.8, 0.025 * scale + 1.0, 1))
            mark = (xx - cx).square() + (yy - cy).square() <= radius**2
        image = torch.where(mark, colour, image)
    return image


def _object_colour(g: torch.Generator, background: Tensor) -> Tensor:
    colour = _uniform(g, 0, 1, 3)
    if float((colour - background).abs().mean()) < 0.3:  # too close to see: push it away
        colour = torch.where(background > 0.5, background - 0.45, background + 0.45)
    return colour.clamp(0, 1)


def render(labels: list[int], size: tuple[int, int], g: torch.Generator) -> dict[str, Tensor]:
    """One image with the given shape classes (non-overlapping) and its ground truth.

    Returns ``image`` (3, H, W) float32 in [0, 1], ``mask`` (n, H, W) bool (pixels at least half
    covered), ``box`` (n, 4) long as (x0, y0, x1, y1) with x1, y1 exclusive, ``label`` (n,).

    Examples:
        >>> import torch
        >>> sample = render([3, 5], (64, 80), torch.Generator().manual_seed(0))
        >>> sample["image"].shape, sample["mask"].shape, sample["box"].shape
        (torch.Size([3, 64, 80]), torch.Size([2, 64, 80]), torch.Size([2, 4]))
    """
    height, width = size
    scale = min(height, width)
    image = _distractors(g, _background(g, height, width))
    low, high = (0.11, 0.24) if len(labels) == 1 else (0.11, 0.19)
    placed: list[tuple[float, float, float]] = []
    masks, boxes = [], []
    for label in labels:
        for _ in range(200):  # rejection sampling: inside the image, apart from the others
            radius = float(_uniform(g, low, high, 1)) * scale
            margin = radius * 1.15 + 1
            cx = float(_uniform(g, margin, width - margin, 1))
            cy = float(_uniform(g, margin, height - margin, 1))
            if all(math.hypot(cx - x, cy - y) > (radius + r) * 1.2 + 2 for x, y, r in placed):
                break
        else:
            raise ValueError(f"cannot place {len(labels)} shapes apart in a {size} image")
        placed.append((cx, cy, radius))
        angle = float(_uniform(g, 0, 2 * math.pi, 1))
        cover = shape_coverage(label, size, (cx, cy), radius, angle)
        region = cover > 0
        colour = _object_colour(g, image[:, region].mean(dim=1))
        shade = colour[:, None, None] + torch.randn(3, height, width, generator=g) * 0.02
        image = image * (1 - cover) + shade * cover
        mask = cover >= 0.5
        rows, cols = mask.any(dim=1).nonzero()[:, 0], mask.any(dim=0).nonzero()[:, 0]
        boxes.append([int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1])
        masks.append(mask)
    return {
        "image": image.clamp(0, 1).float(),
        "label": torch.tensor(labels, dtype=torch.long),
        "mask": torch.stack(masks),
        "box": torch.tensor(boxes, dtype=torch.long),
    }


class ShapesDataset(Dataset[dict[str, Tensor]]):
    """`length` generated samples; sample i depends only on (seed, objects, size, i).

    With ``objects=1`` a sample is ``{"image": (3, H, W), "label": (), "mask": (H, W),
    "box": (4,)}``; with ``objects=2`` (two different classes) ``label`` is (2,), ``mask``
    (2, H, W) and ``box`` (2, 4). Boxes are (x0, y0, x1, y1) in pixels, x1 and y1 exclusive.

    Examples:
        >>> data = ShapesDataset(10, seed=1)
        >>> sample = data[3]
        >>> sample["image"].shape, CLASSES[int(sample["label"])] in CLASSES
        (torch.Size([3, 96, 96]), True)
        >>> torch.equal(sample["image"], ShapesDataset(10, seed=1)[3]["image"])
        True
    """

    def __init__(
        self, length: int, *, size: int | tuple[int, int] = 96, objects: int = 1, seed: int = 0
    ) -> None:
        if objects not in (1, 2):
            raise ValueError(f"objects must be 1 or 2, got {objects}")
        self.length = length
        self.size: tuple[int, int] = (size, size) if isinstance(size, int) else (size[0], size[1])
        self.objects = objects
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        g = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + index) * 7 + self.objects * 131 + self.size[0] * 3
        )
        labels = torch.randperm(len(CLASSES), generator=g)[: self.objects].tolist()
        sample = render(labels, self.size, g)
        if self.objects == 1:
            return {key: value[0] if key != "image" else value for key, value in sample.items()}
        return sample

    def stack(self, start: int = 0, stop: int | None = None) -> dict[str, Tensor]:
        """Samples start..stop as one batch: ``image`` (N, 3, H, W), ``label`` (N, ...), ...

        Examples:
            >>> ShapesDataset(4, size=32).stack()["image"].shape
            torch.Size([4, 3, 32, 32])
        """
        items = [self[i] for i in range(start, self.length if stop is None else stop)]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}
