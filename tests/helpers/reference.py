"""Plain Grad-CAM / Grad-CAM++ written from the papers with hooks and autograd: no camkit code.

One backward pass per (image, class), in float64, straight from the formulas, so that it is easy
to check by eye and shares no shortcut with the library.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def reference_maps(
    model: nn.Module, layer: nn.Module, x: Tensor, classes: list[list[int]]
) -> dict[str, Tensor]:
    """Raw (B, K, h, w) and normalised (B, K, H, W) Grad-CAM and Grad-CAM++ maps."""
    kept: dict[str, Tensor] = {}

    def hook(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor:
        kept["A"] = output
        return output.clone()  # an in-place op after the layer must not change A

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    activations = kept["A"]
    raw: dict[str, list[list[Tensor]]] = {"gradcam": [], "gradcam++": []}
    for b, image_classes in enumerate(classes):
        rows: dict[str, list[Tensor]] = {"gradcam": [], "gradcam++": []}
        for c in image_classes:
            (grad,) = torch.autograd.grad(logits[b, c], activations, retain_graph=True)
            g = grad[b].double()  # (C, h, w)
            a = activations[b].detach().double()
            # Grad-CAM: alpha_k = mean_ij dS/dA_ij
            alpha = g.mean(dim=(1, 2))
            rows["gradcam"].append(torch.relu((alpha[:, None, None] * a).sum(dim=0)))
            # Grad-CAM++: alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3), w_k = sum_ij alpha_ij relu(g)
            denominator = 2 * g**2 + a.sum(dim=(1, 2))[:, None, None] * g**3
            alpha_ij = torch.where(denominator != 0, g**2 / denominator, torch.zeros_like(g))
            weights = (alpha_ij * torch.relu(g)).sum(dim=(1, 2))
            rows["gradcam++"].append(torch.relu((weights[:, None, None] * a).sum(dim=0)))
        for name in raw:
            raw[name].append(rows[name])
    result = {}
    for name, per_image in raw.items():
        maps = torch.stack([torch.stack(row) for row in per_image])  # (B, K, h, w)
        result[f"{name}.raw"] = maps
        up = F.interpolate(maps, size=x.shape[2:], mode="bilinear", align_corners=False)
        low = up.amin(dim=(2, 3), keepdim=True)
        high = up.amax(dim=(2, 3), keepdim=True)
        result[f"{name}.maps"] = (up - low) / (high - low)
    return result
