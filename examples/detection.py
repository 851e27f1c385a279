"""Explain one detection of a torchvision Faster R-CNN, and a YOLO-style output.

Run: python examples/detection.py   (random weights: nothing is downloaded; with your trained
detector the maps show what made it find the box).
"""

import torch
import torchvision
from torch import nn

import camkit

torch.manual_seed(0)
detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
    weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0
).eval()
images = torch.rand(2, 3, 160, 200)

# Which boxes to explain: here each image's top detection (what camkit explains when no
# targets are given: camkit.TopDetections(1)). Box takes (B, K, 4) boxes as (x0, y0, x1, y1)
# in input pixels and (B, K) labels; the score explained is the highest score of the label
# among the detections that overlap the box (IoU >= 0.5).
with torch.no_grad():
    found = detector(images)
boxes = torch.stack([d["boxes"][:1] for d in found])
labels = torch.stack([d["labels"][:1] for d in found])

result = camkit.GradCAM(detector)(images, targets=camkit.Box(boxes, labels))
print("layer:", result.layers[0])  # the backbone's last stage, found automatically
print(
    "maps:", tuple(result.maps.shape), "scores:", [round(float(s), 3) for s in result.scores[:, 0]]
)


class TinyYolo(nn.Module):
    """Stands in for an ultralytics-style head: (B, N, 5 + classes) rows of
    (cx, cy, w, h, objectness, class scores...), one row per grid cell."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.ReLU())
        self.head = nn.Conv2d(16, 5 + classes, 1)

    def forward(self, x):
        cells = self.head(self.backbone(x))  # (B, 5 + classes, h, w)
        h, w = cells.shape[2:]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centre = torch.stack([xs, ys]).to(x) * 4 + 2
        boxes = torch.cat([centre[None].expand(len(x), -1, -1, -1), cells[:, 2:4].exp() * 8], 1)
        scores = cells[:, 4:].sigmoid()
        return torch.cat([boxes, scores], dim=1).flatten(2).transpose(1, 2)


yolo = TinyYolo().eval()
small = images[:, :, :64, :64]
with torch.no_grad():
    rows = yolo(small)  # (B, N, 5 + classes)
best = (rows[..., 4] * rows[..., 5:].amax(-1)).argmax(dim=1)  # each image's top row
top = rows[torch.arange(len(rows)), best]
corners = torch.cat([top[:, :2] - top[:, 2:4] / 2, top[:, :2] + top[:, 2:4] / 2], dim=1)
target = camkit.Box(corners[:, None], top[:, 5:].argmax(dim=1)[:, None])
yolo_result = camkit.GradCAM(yolo)(small, targets=target)
print("yolo maps:", tuple(yolo_result.maps.shape), "layer:", yolo_result.layers[0])
