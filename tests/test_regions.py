"""Box and Region targets against values computed by hand."""

from __future__ import annotations

import pytest
import torch

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
    target = Box([[[0.0, 0, 10, 10], [20.0, 20, 30, 30], [50.0, 50, 60, 60]]] * 2,
                 [[2, 1, 1]] * 2)  # fmt: skip
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
        float(logits[1, 0, 1].sum()), float(logits[1, 0, 1].sum()), float(logits[0, 2, 0, 0])
    ]  # fmt: skip
