"""The targets of detection models (`Box`, `TopDetections`), and the detections they read in
every output style camkit knows: torchvision's lists of dicts, YOLOv5-style rows, ultralytics
YOLO heads and Hugging Face DETR-family outputs, each turned into boxes in input pixels and
per-class scores (`Detections`), without importing any of those libraries.

Both targets are functions ``f(outputs, rows) -> (M, K)``: `rows` says which image each output
row belongs to, so boxes given per image follow that image through Score-CAM's masked copies,
Ablation-CAM's ablated copies and noise smoothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from camkit.boxes import box_iou

STYLES = ("auto", "torchvision", "yolo", "ultralytics", "detr")


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


@dataclasses.dataclass(frozen=True)
class TopDetections:
    """Explain each image's `k` highest-scoring detections, best first: chosen once from the
    explained input's output (as `camkit.TopK` chooses classes), after suppressing overlaps
    of more than `iou` within a class, then scored as `Box` targets, so every masked, ablated
    or noisy copy explains the same boxes. What a detector is explained for when no targets
    are given.

    Examples:
        >>> rows = torch.tensor([[[5.0, 5, 10, 10, 0.5, 0.2, 0.8],
        ...                       [25.0, 25, 10, 10, 0.9, 0.7, 0.1]]])
        >>> box = TopDetections(1).choose(rows, 1, None)
        >>> box.boxes.tolist(), box.labels.tolist()  # 0.9 x 0.7 beats 0.5 x 0.8
        ([[[20.0, 20.0, 30.0, 30.0]]], [[0]])
    """

    k: int = 1
    iou: float = 0.5
    style: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"TopDetections needs a positive whole number, got {self.k!r}")

    def choose(self, outputs: object, batch: int, size: Sequence[int] | None) -> Box:
        """The `Box` of the first `batch` images' top detections in `outputs`."""
        found = detections(outputs, self.style, size)[:batch]
        boxes, labels = [], []
        for image, detection in enumerate(found):
            best, label, corners = detection.ranked(self.iou)
            if len(best) < self.k:
                raise ValueError(
                    f"image {image} has {len(best)} detection(s), fewer than the {self.k} to "
                    "explain: ask for fewer, or give the boxes with camkit.Box"
                )
            boxes.append(corners[best[: self.k]])
            labels.append(label[best[: self.k]])
        return Box(torch.stack(boxes).detach(), torch.stack(labels), self.iou, self.style)


@dataclasses.dataclass(frozen=True)
class Detections:
    """One image's detections: corners (N, 4) in input pixels and scores (N, C): each
    detection's score for every class, or (N, 1) with `labels` (N,) for detections that carry
    one label each (after suppression)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor | None = None

    def ranked(self, iou: float) -> tuple[Tensor, Tensor, Tensor]:
        """(the detections kept after suppressing overlaps above `iou` within a class, best
        first; each detection's label; its corners)."""
        score, label = self.scores.detach().max(dim=1)
        if self.labels is not None:
            label = self.labels
        import torchvision  # here: importing it brings in torch._dynamo, 2.5 s of every start

        kept = torchvision.ops.batched_nms(self.boxes.detach().float(), score.float(), label, iou)
        return kept, label, self.boxes.detach()

    def best(self, wanted: Tensor, classes: Tensor, iou: float) -> Tensor:
        """(K,) the highest score of class `classes[k]` among the detections overlapping
        `wanted[k]` by at least `iou`; 0 (with the graph kept) where there is none."""
        zero = self.scores.sum() * 0  # keeps the graph, so a missing box explains as blank
        if len(self.boxes) == 0:
            return zero.expand(len(wanted)).clone()
        wanted = wanted.to(self.boxes.device, self.boxes.dtype)
        classes = classes.to(self.scores.device)
        overlap = box_iou(wanted[:, None], self.boxes.detach()[None])  # (K, N)
        if self.labels is None:
            if int(classes.max()) >= self.scores.shape[1]:
                raise ValueError(
                    f"label {int(classes.max())} is out of range for a detector with "
                    f"{self.scores.shape[1]} classes"
                )
            score = self.scores.T[classes]  # (K, N): each detection's score for box k's label
            ok = overlap >= iou
        else:
            score = self.scores[:, 0].expand(len(wanted), -1)
            ok = (overlap >= iou) & (self.labels[None, :] == classes[:, None])
        best, _ = torch.where(ok, score, -torch.inf).max(dim=1)
        return torch.where(ok.any(dim=1), best, zero)


def detections(outputs: object, style: str, size: Sequence[int] | None) -> list[Detections]:
    """Each image's detections from a detector's output in `style` (see `camkit.Box`;
    ``"auto"`` tells the styles apart).

    Examples:
        >>> rows = torch.tensor([[[5.0, 5, 10, 10, 0.5, 0.2, 0.8]]])  # YOLOv5: one box
        >>> found = detections(rows, "auto", None)
        >>> found[0].boxes.tolist(), found[0].scores.tolist()
        ([[0.0, 0.0, 10.0, 10.0]], [[0.10000000149011612, 0.4000000059604645]])
    """
    if style == "auto":
        style = _style(outputs)
    if style == "torchvision":
        if not _is_torchvision(outputs):
            raise TypeError("style='torchvision' needs a list of dicts with boxes, labels, scores")
        return [
            Detections(o["boxes"], o["scores"][:, None], o["labels"])
            for o in outputs  # type: ignore[attr-defined]  # a list of dicts, checked
        ]
    if style == "detr":
        return _detr(outputs, size)
    if style == "ultralytics":
        predictions, classes = _ultralytics(outputs)
        corners = _corners(predictions[:, :4].transpose(1, 2))
        scores = predictions[:, 4 : 4 + classes].transpose(1, 2)
        return [Detections(corners[i], scores[i]) for i in range(len(predictions))]
    rows = _tensor_of(outputs, "a (B, N, 5 + classes) tensor")
    if rows.dim() != 3 or rows.shape[-1] < 6:
        raise ValueError(f"a detection tensor must be (B, N, 5 + classes), got {tuple(rows.shape)}")
    corners, scores = _corners(rows[..., :4]), rows[..., 4:5] * rows[..., 5:]
    return [Detections(corners[i], scores[i]) for i in range(len(rows))]


def _style(outputs: object) -> str:
    """Which style `outputs` are in (see `Box`); a clear error where it cannot be told."""
    if _is_torchvision(outputs):
        return "torchvision"
    if _field(outputs, "pred_boxes") is not None and _field(outputs, "logits") is not None:
        return "detr"
    if _is_ultralytics(outputs):
        return "ultralytics"
    if isinstance(outputs, Tensor) and outputs.dim() == 3:
        rows, columns = outputs.shape[1:]
        rows_fit, columns_fit = columns >= 6, rows >= 5  # 5 + classes, or 4 + classes
        if rows_fit != columns_fit or rows != columns:
            return "yolo" if rows_fit and (rows > columns or not columns_fit) else "ultralytics"
        raise ValueError(
            f"a {tuple(outputs.shape)} detection tensor reads both as (B, N, 5 + classes) rows "
            "(YOLOv5) and as (B, 4 + classes, anchors) columns (ultralytics): say which with "
            "Box(..., style='yolo') or style='ultralytics'"
        )
    raise TypeError(
        "Box understands torchvision detection outputs (a list of dicts with boxes, labels and "
        "scores), YOLO-style (B, N, 5 + classes) tensors, ultralytics YOLO outputs and Hugging "
        f"Face DETR-family outputs, not {type(outputs).__name__}; write a target function "
        "f(outputs, rows) -> (M, K) scores for other formats"
    )


def _is_ultralytics(outputs: object) -> bool:
    """ultralytics' eval-mode head: (predictions (B, 4 + classes, anchors), extras), the
    predictions maybe paired with mask prototypes, the extras a dict of the raw head outputs
    (``scores``, ``boxes``; ``one2many`` for end-to-end heads) or, in older releases, the list of
    per-scale maps."""
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
        return False
    first, extras = outputs
    if isinstance(first, (tuple, list)) and first:
        first = first[0]
    if not isinstance(first, Tensor) or first.dim() != 3:
        return False
    if isinstance(extras, Mapping):
        return bool({"scores", "one2many"} & set(extras))
    return (
        isinstance(extras, (tuple, list))
        and len(extras) > 1
        and all(isinstance(t, Tensor) and t.dim() == 4 for t in extras)
    )


def _is_torchvision(outputs: object) -> bool:
    return isinstance(outputs, (list, tuple)) and all(
        isinstance(o, Mapping) and {"boxes", "labels", "scores"} <= set(o) for o in outputs
    )


def _field(outputs: object, name: str) -> Tensor | None:
    found = outputs.get(name) if isinstance(outputs, Mapping) else getattr(outputs, name, None)
    return found if isinstance(found, Tensor) else None


def _tensor_of(outputs: object, what: str) -> Tensor:
    if not isinstance(outputs, Tensor):
        raise TypeError(f"expected {what}, got {type(outputs).__name__}")
    return outputs


def _corners(centred: Tensor) -> Tensor:
    """(..., 4) boxes (cx, cy, w, h) as (x0, y0, x1, y1)."""
    centre, extent = centred[..., :2], centred[..., 2:4]
    return torch.cat([centre - extent / 2, centre + extent / 2], dim=-1)


def _ultralytics(outputs: object) -> tuple[Tensor, int]:
    """(predictions (B, 4 + classes + extra, anchors), classes) from an ultralytics head's
    output: ``(predictions, extras)`` (``((predictions, protos), extras)`` for segmentation),
    where the extras' ``scores`` (B, classes, anchors) say how many classes there are; or a
    bare predictions tensor (every column after the box is a class)."""
    extras: object = None
    if isinstance(outputs, (tuple, list)):
        extras = outputs[1] if len(outputs) > 1 else None
        outputs = outputs[0]
        if isinstance(outputs, (tuple, list)):
            outputs = outputs[0]  # (predictions, protos) of a segment head
    predictions = _tensor_of(outputs, "ultralytics predictions (B, 4 + classes, anchors)")
    if predictions.dim() != 3 or predictions.shape[1] < 5:
        raise ValueError(
            f"ultralytics predictions must be (B, 4 + classes, anchors), got "
            f"{tuple(predictions.shape)}"
        )
    if isinstance(extras, Mapping) and isinstance(extras.get("one2many"), Mapping):
        extras = extras["one2many"]
    scores = extras.get("scores") if isinstance(extras, Mapping) else None
    classes = scores.shape[1] if isinstance(scores, Tensor) else predictions.shape[1] - 4
    return predictions, int(classes)


_SOFTMAX_DETRS = ("Detr", "Yolos", "TableTransformer")  # a last "no object" class


def _detr(outputs: object, size: Sequence[int] | None) -> list[Detections]:
    logits, boxes = _field(outputs, "logits"), _field(outputs, "pred_boxes")
    if logits is None or boxes is None:
        raise TypeError("style='detr' needs an output with logits and pred_boxes")
    if size is None or len(size) != 2:
        raise ValueError(
            "DETR-family boxes are relative to the input: give its size, Box(...)(outputs, "
            "size=(H, W)) (the explainer does this itself)"
        )
    height, width = size
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    corners = _corners(boxes) * scale
    if type(outputs).__name__.startswith(_SOFTMAX_DETRS):
        scores = logits.softmax(dim=-1)[..., :-1]
    else:
        scores = logits.sigmoid()
    return [Detections(corners[i], scores[i]) for i in range(len(logits))]


def detection_style(outputs: object) -> str | None:
    """The style of a detector's output (see `detections`), or None for other outputs.

    Examples:
        >>> detection_style([{"boxes": torch.zeros(0, 4), "labels": [], "scores": []}])
        'torchvision'
        >>> detection_style(torch.zeros(2, 10)) is None
        True
    """
    if isinstance(outputs, Tensor) and outputs.dim() != 3:
        return None
    try:
        return _style(outputs)
    except (TypeError, ValueError):
        return None
