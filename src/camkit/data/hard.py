"""A harder split of the shapes benchmark, for the deeper bundled model: several small instances
of one class, clutter in the objects' own colour, and strokes that occlude the objects."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from camkit.data.shapes import (
    CLASSES,
    _background,
    _distractors,
    _object_colour,
    _uniform,
    shape_coverage,
)


def _clutter(g: torch.Generator, image: Tensor, colour: Tensor, count: int) -> Tensor:
    """Dots and short strokes in `colour`: the objects' colour alone is no evidence."""
    _, height, width = image.shape
    rows = torch.arange(height, dtype=torch.float64) + 0.5
    yy, xx = torch.meshgrid(rows, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij")
    for _ in range(count):
        cx, cy = float(_uniform(g, 0, width, 1)), float(_uniform(g, 0, height, 1))
        if float(_uniform(g, 0, 1, 1)) < 0.5:
            radius = float(_uniform(g, 1.0, 0.03 * min(height, width) + 1.0, 1))
            mark = (xx - cx).square() + (yy - cy).square() <= radius**2
        else:
            angle, half = float(_uniform(g, 0, math.pi, 1)), float(_uniform(g, 4, 10, 1))
            along = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
            across = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
            mark = (along.abs() <= half) & (across.abs() <= 1.0)
        image = torch.where(mark, colour[:, None, None], image)
    return image


class HardShapes(Dataset[dict[str, Tensor]]):
    """`length` generated samples; sample i depends only on (seed, size, i).

    Each image holds 1 to 3 instances of one class, smaller than in `ShapesDataset` (radius 7%
    to 14% of the side), in one colour; dots and strokes of that same colour clutter the
    background, and each instance is crossed by an occluding stroke with probability 1/2. A
    sample is ``{"image": (3, H, W), "label": (), "mask": (H, W)}``, the mask covering every
    instance.

    Examples:
        >>> sample = HardShapes(3, seed=1)[0]
        >>> sample["image"].shape, sample["mask"].dtype
        (torch.Size([3, 96, 96]), torch.bool)
    """

    def __init__(self, length: int, *, size: int = 96, seed: int = 0) -> None:
        self.length, self.size, self.seed = length, size, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + index) * 13 + self.size)
        size = self.size
        label = int(torch.randint(len(CLASSES), (1,), generator=g))
        count = int(torch.randint(1, 4, (1,), generator=g))
        image = _distractors(g, _background(g, size, size))
        colour = _object_colour(g, image.mean(dim=(1, 2)))
        image = _clutter(g, image, colour, int(torch.randint(3, 7, (1,), generator=g)))
        placed: list[tuple[float, float, float]] = []
        mask = torch.zeros(size, size, dtype=torch.bool)
        for _ in range(count):
            for _ in range(200):
                radius = float(_uniform(g, 0.07, 0.14, 1)) * size
                margin = radius * 1.15 + 1
                cx, cy = (float(_uniform(g, margin, size - margin, 1)) for _ in range(2))
                if all(math.hypot(cx - x, cy - y) > (radius + r) * 1.15 for x, y, r in placed):
                    break
            placed.append((cx, cy, radius))
            angle = float(_uniform(g, 0, 2 * math.pi, 1))
            cover = shape_coverage(label, (size, size), (cx, cy), radius, angle)
            shade = colour[:, None, None] + torch.randn(3, size, size, generator=g) * 0.02
            image = image * (1 - cover) + shade * cover
            mask |= cover >= 0.5
            if float(_uniform(g, 0, 1, 1)) < 0.5:  # an occluding stroke across the instance
                stroke = _uniform(g, 0, 1, 3)
                yy, xx = torch.meshgrid(
                    torch.arange(size, dtype=torch.float64) + 0.5,
                    torch.arange(size, dtype=torch.float64) + 0.5,
                    indexing="ij",
                )
                turn = float(_uniform(g, 0, math.pi, 1))
                across = -(xx - cx) * math.sin(turn) + (yy - cy) * math.cos(turn)
                along = (xx - cx) * math.cos(turn) + (yy - cy) * math.sin(turn)
                band = (across.abs() <= 1.2) & (along.abs() <= radius * 1.3)
                image = torch.where(band, stroke[:, None, None], image)
        return {"image": image.clamp(0, 1).float(), "label": torch.tensor(label), "mask": mask}

    def stack(self, start: int = 0, stop: int | None = None) -> dict[str, Tensor]:
        """Samples start..stop as one batch (each entry stacked)."""
        items = [self[i] for i in range(start, self.length if stop is None else stop)]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}
