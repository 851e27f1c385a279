"""Explain timm models: convolutional, transformer and hybrid, with the automatic layer.

Run: python examples/timm_models.py   (pretrained=False: random weights, nothing downloaded;
use pretrained=True, or load your checkpoint, for real maps).
"""

import timm
import torch

import camkit
from camkit.layers import candidates

x = torch.rand(2, 3, 64, 64)
for name, options in [
    ("resnet18", {}),
    ("convnext_atto", {}),
    ("vit_tiny_patch16_224", {"img_size": 64}),
    ("swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 2}),
]:
    model = timm.create_model(name, pretrained=False, num_classes=10, **options).eval()
    result = camkit.GradCAMElementWise(model)(x, targets=camkit.TopK(2))
    print(f"{name:30s} layer {result.layers[0]:18s} grid {tuple(result.raw[0].shape[2:])}")

# Every layer that could be explained, with its output shape and layout:
for c in candidates(model, x)[-3:]:
    print(c.name, c.shape, c.layout, c.grid)
