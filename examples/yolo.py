"""Explain ultralytics YOLO (v8, 11, ...) detections, segmentations and classifications.

Run: python examples/yolo.py   (built from ultralytics' yaml with random weights: nothing is
downloaded; with your weights, YOLO("best.pt") or the command's --model best.pt --trust-model).
camkit reads YOLO's outputs and modules without importing ultralytics; this script imports it
only to build the networks.
"""

import torch
from ultralytics import YOLO

import camkit

torch.manual_seed(0)
images = torch.rand(2, 3, 128, 160)  # sides a multiple of 32, in [0, 1]

# Pass the YOLO object (or its .model) in eval mode. The automatic layer is the three feature
# maps the Detect head reads (P3, P4, P5), fused: each box's score comes from one scale.
detector = YOLO("yolov8n.yaml").eval()
result = camkit.GradCAM(detector)(images)  # no targets: each image's top detection
print("layers:", ", ".join(result.layers), "maps:", tuple(result.maps.shape))

# Boxes of your own: (B, K, 4) as (x0, y0, x1, y1) in input pixels and (B, K) labels. Box reads
# the head's (B, 4 + classes, anchors) output as it is: a box's score is the highest class
# probability among the anchors that overlap it (there is no objectness). Here the boxes are
# each image's top detection, as TopDetections chooses them.
with torch.no_grad():
    outputs = detector.model(images)
box = camkit.TopDetections(1).choose(outputs, len(images), None)
print("box:", [round(v) for v in box.boxes[0, 0].tolist()], "label:", int(box.labels[0, 0]))
print("box score:", round(camkit.HiResCAM(detector)(images, targets=box).scores[0, 0].item(), 6))
top3 = camkit.explain(detector, images, "gradcam++", targets=camkit.TopDetections(3))
print("top 3 detections:", tuple(top3.maps.shape))

# EigenCAM at the last layer before the head, as pytorch-grad-cam's YOLO tutorial does
# (tests/test_model_zoo.py checks the two give the same map).
eigen = camkit.EigenCAM(detector, layer="model.21")(images)
print("eigencam at model.21:", tuple(eigen.maps.shape))

# Segmentation and classification networks work the same way: a segment head's boxes are
# explained like a detector's; a classifier returns (probabilities, logits), and the logits
# are explained.
segmenter = YOLO("yolov8n-seg.yaml").eval()
print("segment layers:", ", ".join(camkit.GradCAM(segmenter)(images).layers))
classifier = YOLO("yolov8n-cls.yaml").eval()
print("classify layer:", camkit.layers.find_spatial_layer(classifier, images))
