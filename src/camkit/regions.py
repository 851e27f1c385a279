"""The target of a segmentation model: a class inside a region (`Region`).

A target function ``f(outputs, rows) -> (M, K)``: `rows` says which image each output row
belongs to, so a mask given per image follows that image through Score-CAM's masked copies,
Ablation-CAM's ablated copies and noise smoothing. Detections are in `camkit.detections`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from camkit.targets import select_output


@dataclasses.dataclass(frozen=True, eq=False)
class Region:
    """The sum of a class's segmentation logits inside a mask, per image.

    Args:
        classes: one class for every image, or one per image (B,).
        masks: one mask shared by every image, shaped like the output's grid ((H, W), or
            (D, H, W) for a volume, (L,) for a signal), or one per image (B, *grid); bool or
            weights, at the output's resolution (torchvision segmentation models and MONAI's
            return the input's).

    The output is (B, classes, *grid) logits (2-D images, 3-D volumes, 1-D signals), or a dict
    with ``"out"`` (torchvision), or any output `output=` selects. Whether a 3-dimensional
    mask is one volume or a batch of images is read from the logits' grid.

    Examples:
        >>> import torch
        >>> logits = torch.zeros(2, 3, 4, 4)
        >>> logits[:, 1, :2, :2] = 1.0
        >>> masks = torch.zeros(2, 4, 4, dtype=torch.bool)
        >>> masks[0, :2, :2] = True  # image 0: the top-left square; image 1: nothing
        >>> Region(1, masks)(logits).tolist()
        [[4.0], [0.0]]
    """

    classes: int | Sequence[int] | Tensor
    masks: Any

    def __post_init__(self) -> None:
        masks = torch.as_tensor(self.masks) if not isinstance(self.masks, Tensor) else self.masks
        if masks.dim() < 1 or masks.numel() == 0:
            raise ValueError(f"masks must not be empty, got shape {tuple(masks.shape)}")
        classes = torch.as_tensor(self.classes).long().reshape(-1)
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "classes", classes)

    def __call__(self, outputs: object, rows: Tensor | None = None) -> Tensor:
        """The region's score for each row of the outputs (B, 1)."""
        logits = select_output(outputs)
        if logits.dim() < 3:
            raise ValueError(
                f"Region needs segmentation logits (B, classes, *grid), got {tuple(logits.shape)}"
            )
        grid = tuple(logits.shape[2:])
        if rows is None:
            rows = torch.arange(len(logits))
        rows = rows.to(logits.device)
        masks = self._masks(grid).to(logits.device)
        classes = torch.as_tensor(self.classes, device=logits.device)
        if classes.numel() not in (1, masks.shape[0]) and masks.shape[0] != 1:
            raise ValueError(
                f"{classes.numel()} classes for {masks.shape[0]} masks: give one class, or one "
                "per image with one mask per image"
            )
        for given, name in ((masks, "masks"), (classes, "classes")):
            if len(given) > 1 and int(rows.max()) >= len(given):
                raise ValueError(
                    f"Region has {name} for {len(given)} images, not for image {int(rows.max())}"
                )
        mask = masks[rows] if len(masks) > 1 else masks.expand(len(rows), *grid)
        chosen = classes[rows] if len(classes) > 1 else classes.expand(len(rows))
        if int(chosen.max()) >= logits.shape[1] or int(chosen.min()) < 0:
            raise ValueError(
                f"class {int(chosen.max())} is out of range for {logits.shape[1]} output classes"
            )
        index = chosen.view(-1, 1, *[1] * len(grid)).expand(-1, 1, *grid)
        picked = logits.gather(1, index)[:, 0]
        summed: Tensor = (picked * mask.to(logits.dtype)).flatten(1).sum(dim=1)
        return summed[:, None]

    def _masks(self, grid: tuple[int, ...]) -> Tensor:
        """The masks as (1 or B, *grid) for logits with this grid."""
        masks: Tensor = self.masks
        if masks.dim() == len(grid):
            masks = masks.unsqueeze(0)
        if masks.dim() != len(grid) + 1 or tuple(masks.shape[1:]) != grid:
            raise ValueError(
                f"masks are {tuple(self.masks.shape)} but the logits' grid is {grid}: give one "
                f"mask {grid} or one per image (B, {', '.join(map(str, grid))}), at the output's "
                "resolution"
            )
        return masks
