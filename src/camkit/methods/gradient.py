"""Grad-CAM and Grad-CAM++: channel weights from the gradient of the score."""

from __future__ import annotations

import torch
from torch import Tensor

from camkit.methods.base import Evidence, Explainer, channel_sum, register


def _gradients(evidence: Evidence) -> tuple[Tensor, tuple[int, ...]]:
    """dS/dA (B, K, C, *spatial) and its spatial dimensions."""
    assert evidence.gradients is not None  # the base computes them for needs_gradients methods
    return evidence.gradients, tuple(d + 1 for d in evidence.spatial)


@register("gradcam")
class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k alpha_k^c A^k)``, ``alpha = mean_ij dS/dA``.

    Example:
        >>> import torch, camkit
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                           torch.nn.Linear(8, 5)).eval()
        >>> camkit.GradCAM(net)(torch.rand(2, 3, 16, 16), targets=3).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    def weigh(self, evidence: Evidence) -> Tensor:
        gradients, spatial = _gradients(evidence)
        return channel_sum(gradients.mean(dim=spatial), evidence.activations)


@register("gradcam++")
class GradCAMPlusPlus(Explainer):
    """Grad-CAM++ (Chattopadhyay et al. 2018), closed form for ``Y = exp(S)``.

    ``alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3)`` (0 where the denominator is 0) and
    ``w_k = sum_ij alpha_ij ReLU(g_ij)`` with ``g = dS/dA``; exact when the path from A to S is
    piecewise linear. `raw` omits the positive factor exp(S) of dY/dA (it overflows for large
    scores and cancels in the normalised map).

    Example:
        >>> import torch, camkit
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                           torch.nn.Linear(8, 5)).eval()
        >>> camkit.GradCAMPlusPlus(net)(torch.rand(2, 3, 16, 16), targets=camkit.TopK(2)).maps.shape
        torch.Size([2, 2, 16, 16])
    """

    def weigh(self, evidence: Evidence) -> Tensor:
        g, spatial = _gradients(evidence)
        g2 = g.square()
        # sum_ab A_ab per channel, shaped (B, 1, C, 1, ...) to broadcast against g.
        total = evidence.activations.sum(dim=evidence.spatial, keepdim=True).unsqueeze(1)
        denominator = 2 * g2 + total * g2 * g
        defined = denominator != 0
        alpha = torch.where(defined, g2 / torch.where(defined, denominator, 1.0), 0.0)
        return channel_sum((alpha * g.clamp_min(0)).sum(dim=spatial), evidence.activations)
