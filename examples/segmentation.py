"""Explain a region of a segmentation: why does DeepLabV3 call these pixels class 1?

Run: python examples/segmentation.py   (random weights: nothing is downloaded).
"""

import torch
import torchvision

import camkit

torch.manual_seed(0)
model = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
    weights=None, weights_backbone=None, num_classes=4, aux_loss=False
).eval()
images = torch.rand(2, 3, 96, 96)

# One mask per image (B, H, W), or one (H, W) for all; one class, or one per image. The score
# is the sum of the class's logits inside the mask; per-image masks follow each image through
# Score-CAM's masked copies and noise smoothing.
masks = torch.zeros(2, 96, 96, dtype=torch.bool)
masks[0, 10:40, 10:40] = True
masks[1, 50:90, 40:80] = True
target = camkit.Region([1, 2], masks)

for method in ("gradcam", "gradcam++", "eigencam"):
    result = camkit.explain(model, images, method, targets=target)
    print(method, "layer:", result.layers[0], "maps:", tuple(result.maps.shape))
score_cam = camkit.ScoreCAM(model, channels=16)(images, targets=target)  # 16 of 960 channels
print("scorecam (top 16 channels):", tuple(score_cam.maps.shape))
