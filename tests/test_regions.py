"""Box and Region targets against values computed by hand."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit import Box, Region
from camkit.targets import takes_rows


def detections() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 9, 10], [20.0, 20, 30, 30]]),
            "labels": torch.tensor([1, 2, 1]),
            "scores": torch.tensor([0.9, 0.8, 0.7], requires_grad=True),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.long),
            "scores": torch.zeros(0, requires_grad=True),
        },
    ]


def test_box_takes_the_best_overlapping_detection_of_the_same_label() -> None:
    found = detections()
    # Image 0: box A overlaps detections 0 (label 1, IoU 1) and 1 (label 2, IoU 0.9): label 2
    # picks detection 1; box B has label 1 and matches detection 2; box C matches nothing.
    target = Box([[[0.0, 0, 10, 10], [20.0, 20, 30, 30], [50.0, 50, 60, 60]]] * 2, [[2, 1, 1]] * 2)
    scores = target(found)
    assert scores.flatten().tolist() == pytest.approx([0.8, 0.7, 0.0, 0.0, 0.0, 0.0])
    scores.sum().backward()  # the matched scores keep their graph
    assert found[0]["scores"].grad.tolist() == [0.0, 1.0, 1.0]


def test_box_iou_threshold_and_rows() -> None:
    shifted = Box([[5.0, 0, 15, 10]], [1], iou=0.5)  # IoU with detection 0 is 1/3
    assert shifted(detections()[:1]).tolist() == [[0.0]]
    loose = Box([[5.0, 0, 15, 10]], [1], iou=0.3)
    assert loose(detections()[:1]).item() == pytest.approx(0.9)
    per_image = Box([[[0.0, 0, 10, 10]], [[20.0, 20, 30, 30]]], [[1], [1]])
    copies = [detections()[0]] * 4  # four copies of image 0's output, for images 0, 1, 0, 1
    assert per_image(copies, torch.tensor([0, 1, 0, 1])).flatten().tolist() == pytest.approx(
        [0.9, 0.7, 0.9, 0.7]
    )
    assert takes_rows(per_image)
    assert not takes_rows(lambda outputs: outputs)


def test_box_reads_yolo_style_tensors() -> None:
    rows = torch.tensor([[[5.0, 5, 10, 10, 0.5, 0.1, 0.8], [25.0, 25, 10, 10, 0.9, 0.7, 0.2]]])
    assert Box([[0.0, 0, 10, 10]], [1])(rows).item() == pytest.approx(0.4)  # 0.5 x 0.8
    assert Box([[20.0, 20, 30, 30]], [0])(rows).item() == pytest.approx(0.63)


def test_box_and_region_refuse_what_they_cannot_read() -> None:
    with pytest.raises(ValueError, match=r"boxes \(1, 2, 4\) and labels \(1, 3\) do not match"):
        Box([[0.0, 0, 1, 1], [0.0, 0, 2, 2]], [1, 2, 3])
    with pytest.raises(ValueError, match="iou must be between 0 and 1"):
        Box([[0.0, 0, 1, 1]], [1], iou=1.5)
    with pytest.raises(TypeError, match="write a target function f\\(outputs, rows\\)"):
        Box([[0.0, 0, 1, 1]], [1])({"logits": torch.zeros(1, 3)})
    with pytest.raises(ValueError, match=r"masks are \(4, 4\) but the logits. grid is \(8, 8\)"):
        Region(1, torch.ones(4, 4))(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="class 5 is out of range for 3 output classes"):
        Region(5, torch.ones(8, 8))(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="Region needs segmentation logits"):
        Region(1, torch.ones(8, 8))(torch.zeros(2, 3))


def test_region_sums_each_images_class_inside_its_mask() -> None:
    logits = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    masks = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [1, 1]]], dtype=torch.bool)
    assert Region([2, 0], masks)(logits).tolist() == [[8.0], [14.0 + 15.0]]
    shared = Region(1, masks[0])({"out": logits})  # torchvision's dict output
    assert shared.tolist() == [[4.0], [16.0]]
    rows = torch.tensor([1, 1, 0])
    assert Region([2, 0], masks)(logits[[1, 1, 0]], rows).flatten().tolist() == [
        float(logits[1, 0, 1].sum()),
        float(logits[1, 0, 1].sum()),
        float(logits[0, 2, 0, 0]),
    ]


def ultralytics_outputs(classes: int = 2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Two anchors of ultralytics' eval-mode detect head: (B, 4 + classes, anchors) predictions
    of (cx, cy, w, h, class probabilities), and its extras (whose scores say the class count)."""
    predictions = torch.tensor(
        [[[5.0, 25.0], [5.0, 25.0], [10.0, 10.0], [10.0, 10.0], [0.2, 0.7], [0.8, 0.1]]]
    )[:, : 4 + classes]
    return predictions, {"scores": torch.zeros(1, classes, 2), "boxes": torch.zeros(1, 64, 2)}


def test_box_reads_ultralytics_outputs_as_they_are() -> None:
    """No objectness column: the class probability is the box's score (0.8, not 0.2 x 0.8)."""
    outputs = ultralytics_outputs()
    assert Box([[0.0, 0, 10, 10]], [1])(outputs).item() == pytest.approx(0.8)
    assert Box([[20.0, 20, 30, 30]], [0])(outputs).item() == pytest.approx(0.7)
    # a segment head: ((predictions + 32 mask coefficients, protos), extras)
    predictions, extras = outputs
    with_masks = torch.cat([predictions, torch.full((1, 32, 2), 9.0)], dim=1)
    segment = ((with_masks, torch.zeros(1, 32, 4, 4)), {**extras, "mask_coefficient": 0})
    assert Box([[0.0, 0, 10, 10]], [1])(segment).item() == pytest.approx(0.8)
    # the bare predictions tensor (output= picked it): every column after the box is a class
    assert Box([[0.0, 0, 10, 10]], [1], style="ultralytics")(predictions).item() == (
        pytest.approx(0.8)
    )


def test_a_square_detection_tensor_is_refused_until_its_style_is_given() -> None:
    square = torch.rand(1, 84, 84)  # 80 classes at 64 x 64: rows (YOLOv5) or columns?
    with pytest.raises(ValueError, match=r"style='yolo'\) or style='ultralytics'"):
        Box([[0.0, 0, 10, 10]], [1])(square)
    assert Box([[0.0, 0, 10, 10]], [1], style="yolo")(square).shape == (1, 1)
    with pytest.raises(ValueError, match="style must be one of"):
        Box([[0.0, 0, 10, 10]], [1], style="coco")


class DetrObjectDetectionOutput(dict):  # named as Hugging Face's: a softmax with "no object"
    def __getattr__(self, name):
        return self[name]


class RTDetrObjectDetectionOutput(DetrObjectDetectionOutput):  # a sigmoid per class
    pass


@pytest.mark.parametrize("kind", [DetrObjectDetectionOutput, RTDetrObjectDetectionOutput])
def test_box_reads_detr_family_outputs_relative_to_the_input(kind) -> None:
    logits = torch.tensor([[[2.0, 0.0, 1.0], [0.0, 3.0, -1.0]]])
    boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5], [0.75, 0.5, 0.5, 1.0]]])  # cx, cy, w, h
    outputs = kind(logits=logits, pred_boxes=boxes)
    target = Box([[0.0, 0, 20, 10]], [0])  # query 0 at 40 x 20 pixels: (0, 0, 20, 10)
    with pytest.raises(ValueError, match=r"relative to the input: give its size"):
        target(outputs)
    score = target(outputs, size=(20, 40)).item()
    if kind is DetrObjectDetectionOutput:  # the last class is "no object"
        assert score == pytest.approx(torch.softmax(logits[0, 0], 0)[0].item())
    else:
        assert score == pytest.approx(torch.sigmoid(logits[0, 0, 0]).item())


def test_top_detections_are_chosen_once_and_suppress_duplicates() -> None:
    # Anchors 0 and 1 are one object (IoU 0.9), anchor 2 another: the second best is anchor 2.
    predictions = torch.tensor(
        [
            [
                [5.0, 5.5, 25.0],
                [5.0, 5.0, 25.0],
                [10.0, 10.0, 10.0],
                [10.0, 10.0, 10.0],
                [0.9, 0.85, 0.3],
                [0.1, 0.1, 0.6],
            ]
        ]
    )
    outputs = (predictions, {"scores": torch.zeros(1, 2, 3)})
    box = camkit.TopDetections(2).choose(outputs, 1, None)
    assert box.labels.tolist() == [[0, 1]]
    assert box.boxes[0, 1].tolist() == [20.0, 20.0, 30.0, 30.0]
    assert box(outputs).tolist() == [[pytest.approx(0.9), pytest.approx(0.6)]]
    with pytest.raises(ValueError, match="fewer than the 3 to explain"):
        camkit.TopDetections(3).choose(outputs, 1, None)
    with pytest.raises(ValueError, match="positive whole number"):
        camkit.TopDetections(0)


def test_region_reads_volumes_and_signals_from_the_logits_grid() -> None:
    volume = torch.zeros(2, 3, 4, 5, 6)
    volume[:, 1, :2] = 1.0
    mask = torch.zeros(4, 5, 6, dtype=torch.bool)  # one (D, H, W) mask, not 4 images
    mask[0] = True
    assert Region(1, mask)(volume).flatten().tolist() == [30.0, 30.0]
    per_image = torch.stack([mask, ~mask])  # (B, D, H, W)
    assert Region([1, 1], per_image)(volume).flatten().tolist() == [30.0, 30.0]
    signal = torch.arange(2 * 2 * 5, dtype=torch.float32).view(2, 2, 5)
    assert Region(0, torch.tensor([1, 0, 0, 0, 1]))(signal).flatten().tolist() == [4.0, 24.0]
    with pytest.raises(ValueError, match=r"masks are \(5, 6\) but the logits' grid is \(4, 5, 6\)"):
        Region(1, mask[0])(volume)
