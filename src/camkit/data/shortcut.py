"""Shapes with a planted shortcut: a small coloured tag whose colour is the class.

In the training split the tag's colour gives the label and the shape is drawn independently of
it, so only the tag predicts the class. In the ``"conflict"`` split the shape is always of
another class than the tag: a model that learned the shortcut follows the tag there. The
evidence is known by construction, and each sample carries the image without its tag and the
image without its shape to check it (Adebayo et al., ICLR 2022, plant shortcuts the same way).
"""

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

TAG_SIDE = 6  # pixels, border included, whatever the image size
# One saturated colour per class: red, green, blue, yellow, magenta, cyan.
TAG_COLOURS = torch.tensor(
    [
        [0.95, 0.1, 0.1],
        [0.1, 0.85, 0.1],
        [0.15, 0.25, 0.95],
        [0.95, 0.9, 0.1],
        [0.9, 0.1, 0.9],
        [0.1, 0.9, 0.9],
    ],
    dtype=torch.float64,
)
SPLITS = ("train", "conflict")


def _stamp(image: Tensor, label: int, top: int, left: int) -> Tensor:
    """The tag: a square of the class's colour inside a one-pixel black border."""
    tagged = image.clone()
    tagged[:, top : top + TAG_SIDE, left : left + TAG_SIDE] = 0.0
    inner = slice(top + 1, top + TAG_SIDE - 1), slice(left + 1, left + TAG_SIDE - 1)
    tagged[:, inner[0], inner[1]] = TAG_COLOURS[label][:, None, None]
    return tagged


class ShortcutShapes(Dataset[dict[str, Tensor]]):
    """`length` generated samples of one split; sample i depends only on (seed, split, size, i).

    Each sample is a dict: ``image`` (3, H, W) in [0, 1]; ``label``, the tag's class (what the
    shortcut model predicts); ``shape``, the shape's class; ``tag_mask`` and ``shape_mask``
    (H, W) bool; ``without_tag`` and ``without_shape``, the same image with the tag or the shape
    left out (the background is unchanged).

    Examples:
        >>> data = ShortcutShapes(4, split="conflict", seed=1)
        >>> sample = data[0]
        >>> sample["image"].shape, int(sample["tag_mask"].sum()), sample["label"] != sample["shape"]
        (torch.Size([3, 96, 96]), 36, tensor(True))
    """

    def __init__(self, length: int, *, split: str = "train", size: int = 96, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.length, self.split, self.size, self.seed = length, split, size, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        key = (self.seed * 1_000_003 + index) * 11 + SPLITS.index(self.split) * 7 + self.size
        g = torch.Generator().manual_seed(key)
        classes = len(CLASSES)
        label = int(torch.randint(classes, (1,), generator=g))
        if self.split == "train":  # independent of the label: the shape predicts nothing
            shape = int(torch.randint(classes, (1,), generator=g))
        else:  # always another class than the tag's
            shape = (label + 1 + int(torch.randint(classes - 1, (1,), generator=g))) % classes
        size = self.size
        background = _distractors(g, _background(g, size, size))
        radius = float(_uniform(g, 0.13, 0.24, 1)) * size
        margin = radius * 1.15 + 1
        cx, cy = (float(_uniform(g, margin, size - margin, 1)) for _ in range(2))
        cover = shape_coverage(shape, (size, size), (cx, cy), radius, float(_uniform(g, 0, 6.3, 1)))
        colour = _object_colour(g, background[:, cover > 0].mean(dim=1))
        shade = colour[:, None, None] + torch.randn(3, size, size, generator=g) * 0.02
        shaped = background * (1 - cover) + shade * cover
        for _ in range(200):  # the tag apart from the shape
            top, left = (
                int(torch.randint(1, size - TAG_SIDE - 1, (1,), generator=g)) for _ in range(2)
            )
            centre = (left + TAG_SIDE / 2, top + TAG_SIDE / 2)
            if math.hypot(centre[0] - cx, centre[1] - cy) > radius * 1.2 + TAG_SIDE:
                break
        tag_mask = torch.zeros(size, size, dtype=torch.bool)
        tag_mask[top : top + TAG_SIDE, left : left + TAG_SIDE] = True
        return {
            "image": _stamp(shaped, label, top, left).clamp(0, 1).float(),
            "label": torch.tensor(label),
            "shape": torch.tensor(shape),
            "tag_mask": tag_mask,
            "shape_mask": cover >= 0.5,
            "without_tag": shaped.clamp(0, 1).float(),
            "without_shape": _stamp(background, label, top, left).clamp(0, 1).float(),
        }

    def stack(self, start: int = 0, stop: int | None = None) -> dict[str, Tensor]:
        """Samples start..stop as one batch (each entry stacked)."""
        items = [self[i] for i in range(start, self.length if stop is None else stop)]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}
