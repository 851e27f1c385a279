"""Targets for detection and segmentation models: what to explain when the output is not a
vector of class scores.

Both are target functions ``f(outputs, rows) -> (M, K)``: `rows` says which image each output row
belongs to, so a box or a mask given per image follows that image through Score-CAM's masked
copies, Ablation-CAM's ablated copies and noise smoothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from camkit.boxes import box_iou
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
    """The score of a detection: for each given box, the detection with the given label that
    overlaps it best (IoU at least `iou`), per image; 0 where none does.

    Args:
        boxes: (B, K, 4) or (K, 4) for every image, ``(x0, y0, x1, y1)`` in the model's input
            pixels (the coordinates torchvision detectors return).
        labels: (B, K) or (K,) class labels of the boxes.
        iou: the least overlap for a detection to count as the box.

    Outputs understood: torchvision detection models (a list of dicts with ``boxes``, ``labels``
    and ``scores``, one per image), and a YOLO-style tensor (B, N, 5 + classes) of
    ``(cx, cy, w, h, objectness, class scores...)``, scored as objectness x class score. Any
    other format: write ``f(outputs, rows)`` that returns the (M, K) scores.

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
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)

    def __call__(self, outputs: object, rows: Tensor | None = None) -> Tensor:
        """The region's score for each row of the outputs (B, 1)."""
        detections = _detections(outputs)
        if rows is None:
            rows = torch.arange(len(detections))
        if len(rows) != len(detections):
            raise ValueError(f"{len(detections)} detection outputs for {len(rows)} inputs")
        scores = []
        for detection, row in zip(detections, rows.tolist(), strict=True):
            image = row if self.boxes.shape[0] > 1 else 0
            if image >= self.boxes.shape[0]:
                raise ValueError(
                    f"Box has boxes for {self.boxes.shape[0]} image(s), not for image {row}"
                )
            scores.append(self._score(detection, image))
        return torch.stack(scores)

    def _score(self, detection: Mapping[str, Tensor], image: int) -> Tensor:
        found, labels, score = detection["boxes"], detection["labels"], detection["scores"]
        wanted = self.boxes[image].to(found.device, found.dtype)
        zero = score.sum() * 0  # 0 that keeps the graph, so a missing box explains as blank
        if len(found) == 0:
            return zero.expand(len(wanted)).clone()
        overlap = box_iou(wanted[:, None], found.detach()[None])  # (K, N)
        same = labels[None, :] == self.labels[image, :, None].to(labels.device)
        overlap = torch.where(same & (overlap >= self.iou), overlap, -1.0)
        best = overlap.argmax(dim=1)
        hit = overlap.gather(1, best[:, None])[:, 0] >= 0
        return torch.where(hit, score[best], zero)


def _detections(outputs: object) -> Sequence[Mapping[str, Tensor]]:
    """Detections per image from a torchvision list of dicts or a YOLO-style tensor."""
    if isinstance(outputs, Tensor):
        if outputs.dim() != 3 or outputs.shape[-1] < 6:
            raise ValueError(
                f"a detection tensor must be (B, N, 5 + classes), got {tuple(outputs.shape)}"
            )
        centre, size = outputs[..., :2], outputs[..., 2:4]
        corners = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
        class_scores, labels = outputs[..., 5:].max(dim=-1)
        scores = outputs[..., 4] * class_scores
        return [
            {"boxes": corners[i], "labels": labels[i], "scores": scores[i]}
            for i in range(len(outputs))
        ]
    if isinstance(outputs, (list, tuple)) and all(
        isinstance(o, Mapping) and {"boxes", "labels", "scores"} <= set(o) for o in outputs
    ):
        return list(outputs)
    raise TypeError(
        "Box understands torchvision detection outputs (a list of dicts with boxes, labels and "
        f"scores) and YOLO-style (B, N, 5 + classes) tensors, not {type(outputs).__name__}; "
        "write a target function f(outputs, rows) -> (M, K) scores for other formats"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Region:
    """The sum of a class's segmentation logits inside a mask, per image.

    Args:
        classes: one class for every image, or one per image (B,).
        masks: (H, W) shared by every image, or (B, H, W); bool or weights, at the output's
            resolution (torchvision segmentation models return the input's).

    The output is (B, classes, H, W) logits, or a dict with ``"out"`` (torchvision), or any
    output `output=` selects.

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
        masks = _per_image(self.masks, "masks", 3)
        classes = torch.as_tensor(self.classes).long().reshape(-1)
        if classes.numel() not in (1, masks.shape[0]) and masks.shape[0] != 1:
            raise ValueError(
                f"{classes.numel()} classes for {masks.shape[0]} masks: give one class, or one per "
                "image with one mask per image"
            )
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "classes", classes)

    def __call__(self, outputs: object, rows: Tensor | None = None) -> Tensor:
        """The region's score for each row of the outputs (B, 1)."""
        logits = select_output(outputs)
        if logits.dim() != 4:
            raise ValueError(
                f"Region needs segmentation logits (B, classes, H, W), got {tuple(logits.shape)}"
            )
        if rows is None:
            rows = torch.arange(len(logits))
        rows = rows.to(logits.device)
        masks = self.masks.to(logits.device)
        classes = torch.as_tensor(self.classes, device=logits.device)
        if masks.shape[-2:] != logits.shape[-2:]:
            raise ValueError(
                f"masks are {tuple(masks.shape[-2:])} but the logits are "
                f"{tuple(logits.shape[-2:])}: give masks at the output's resolution"
            )
        for given, name in ((masks, "masks"), (classes, "classes")):
            if len(given) > 1 and int(rows.max()) >= len(given):
                raise ValueError(f"Region has {name} for {len(given)} images, not for image "
                                 f"{int(rows.max())}")  # fmt: skip
        mask = masks[rows] if len(masks) > 1 else masks.expand(len(rows), -1, -1)
        chosen = classes[rows] if len(classes) > 1 else classes.expand(len(rows))
        if int(chosen.max()) >= logits.shape[1] or int(chosen.min()) < 0:
            raise ValueError(
                f"class {int(chosen.max())} is out of range for {logits.shape[1]} output classes"
            )
        picked = logits.gather(1, chosen[:, None, None, None].expand(-1, 1, *logits.shape[2:]))
        summed: Tensor = (picked[:, 0] * mask.to(logits.dtype)).sum(dim=(1, 2))
        return summed[:, None]
