"""Explain a segmentation-models-pytorch segmenter: why are these pixels class 1?

Run: python examples/smp_segmentation.py   (encoder_weights=None: nothing is downloaded).
"""

import segmentation_models_pytorch as smp
import torch

import camkit

torch.manual_seed(2)
images = torch.rand(2, 3, 96, 96)
masks = torch.zeros(2, 96, 96, dtype=torch.bool)  # one region per image, at the output's size
masks[0, 20:60, 20:60] = True
masks[1, 40:90, 10:50] = True
target = camkit.Region([1, 2], masks)  # the sum of the class's logits inside each mask

# The automatic layer is the encoder's deepest stage for every architecture and encoder: the
# decoder's last map is one linear step from the logits, where Grad-CAM is the logit map itself.
for architecture in ("Unet", "FPN", "DeepLabV3Plus"):
    model = getattr(smp, architecture)("resnet18", encoder_weights=None, classes=3).eval()
    result = camkit.GradCAM(model)(images, targets=target)
    print(f"{architecture:14s} layer: {result.layers[0]}  maps: {tuple(result.maps.shape)}")

segformer = smp.Segformer("mit_b0", encoder_weights=None, classes=3).eval()
print("Segformer      layer:", camkit.GradCAM(segformer)(images, targets=target).layers[0])
