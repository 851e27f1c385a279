"""Targets for detection and segmentation models: what to explain when the output is not a
vector of class scores.

Both are target functions ``f(outputs, rows) -> (M, K)``: `rows` says which image each output row
belongs to, so a box or a mask given per image follows that image through Score-CAM's masked
copies, Ablation-CAM's ablated copies and noise smoothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from camkit.detections import STYLES, detections
from camkit.targets import select_output


def _per_image(value: object, name: str, dims: int) -> Tensor:
    tensor = torch.as_tensor(value) if not isinstance(value, Tensor) else value
    if tensor.dim() == dims - 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != dims:
        raise ValueError(
            f"{name} must have {dims - 1} or {dims} dimensions, got {tuple(tensor.shape)}"
        )
    return tensor


@dataclasses.dataclass(frozen=True, eq=False)
class Box:
    """The score of a detection: for each given box and label, the highest score of that label
    among the detections that overlap the box (IoU at least `iou`), per image (the detection
    non-maximum suppression keeps); 0 where none does.

    Args:
        boxes: (B, K, 4) or (K, 4) for every image, ``(x0, y0, x1, y1)`` in the model's input
            pixels (the coordinates torchvision detectors return).
        labels: (B, K) or (K,) class labels of the boxes.
        iou: the least overlap for a detection to count as the box.
        style: how to read the output; ``"auto"`` tells them apart:

            - ``"torchvision"``: a list of dicts with ``boxes``, ``labels`` and ``scores``, one
              per image (detections after suppression);
            - ``"yolo"``: a (B, N, 5 + classes) tensor of ``(cx, cy, w, h, objectness, class
              scores...)`` rows (YOLOv5 style), scored as objectness x class score;
            - ``"ultralytics"``: ultralytics YOLO (v8, 11, ...) detect and segment heads in
              eval mode: ``(predictions, extras)`` with predictions (B, 4 + classes [+ mask
              coefficients], anchors) of ``(cx, cy, w, h, class probabilities...)``; the class
              probability is the box's score (there is no objectness). A bare (B, 4 + classes,
              anchors) tensor (``output=`` picked it, or an exported model) is read too;
            - ``"detr"``: Hugging Face DETR-family outputs, ``logits`` (B, queries, classes)
              and ``pred_boxes`` (B, queries, 4) as ``(cx, cy, w, h)`` relative to the input;
              DETR, YOLOS and Table Transformer score with a softmax that has a last
              "no object" class, the others (RT-DETR, Deformable and Conditional DETR) with a
              sigmoid per class, as their post-processing does. The input's size comes from the
              explainer.

    Any other format: write ``f(outputs, rows)`` that returns the (M, K) scores.

    Examples:
        >>> import torch
        >>> detections = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]),
        ...                "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.7])}]
        >>> Box([[19.0, 21, 30, 30]], [2])(detections).tolist()
        [[0.699999988079071]]
    """

    boxes: Any
    labels: Any
    iou: float = 0.5
    style: str = "auto"

    def __post_init__(self) -> None:
        boxes = _per_image(self.boxes, "boxes", 3).float()
        labels = _per_image(self.labels, "labels", 2).long()
        if boxes.shape[-1] != 4 or boxes.shape[:2] != labels.shape:
            raise ValueError(
                f"boxes {tuple(boxes.shape)} and labels {tuple(labels.shape)} do not match: give "
                "boxes (B, K, 4) as (x0, y0, x1, y1) and labels (B, K)"
            )
        if not 0.0 <= self.iou <= 1.0:
            raise ValueError(f"iou must be between 0 and 1, got {self.iou}")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)

    def __call__(
        self, outputs: object, rows: Tensor | None = None, *, size: Sequence[int] | None = None
    ) -> Tensor:
        """The boxes' scores for each row of the outputs (B, K). `size` is the input's (H, W),
        for outputs whose boxes are relative to it (DETR); the explainer passes it."""
        found = detections(outputs, self.style, size)
        if rows is None:
            rows = torch.arange(len(found))
        if len(rows) != len(found):
            raise ValueError(f"{len(found)} detection outputs for {len(rows)} inputs")
        scores = []
        for detection, row in zip(found, rows.tolist(), strict=True):
            image = row if self.boxes.shape[0] > 1 else 0
            if image >= self.boxes.shape[0]:
                raise ValueError(
                    f"Box has boxes for {self.boxes.shape[0]} image(s), not for image {row}"
                )
            scores.append(detection.best(self.boxes[image], self.labels[image], self.iou))
        return torch.stack(scores)


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
                raise ValueError(f"Region has {name} for {len(given)} images, not for image "
                                 f"{int(rows.max())}")  # fmt: skip
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
