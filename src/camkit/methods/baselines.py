"""Baselines a method must beat: random channel weights, and the image's edges.

A method that does no better than these on a metric is telling you about the metric, the model
or the method; the evaluation ranks them with the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Unpack, override

from camkit import seeds
from camkit.layers import LayerSpec
from camkit.methods.base import (
    Evidence,
    Explainer,
    MethodOptions,
    channel_sum,
    every_target,
    register,
)


@register("randomcam")
class RandomCAM(Explainer):
    """RandomCAM: ``sum_k w_k A^k`` with weights drawn uniformly from [-1, 1] per target.

    As pytorch-grad-cam's RandomCAM; seeded with `seed` (None: a fresh draw each call). Needs
    no gradient: one forward pass.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.RandomCAM(net, seed=1)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    needs_gradients = False
    uses_score = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        seed: int | None = 0,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        self.seed = seed

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        a, scores = evidence.activations, evidence.scores
        assert scores is not None
        generator = None if self.seed is None else seeds.generator(self.seed, a.device)
        shape = (a.shape[0], scores.shape[1], a.shape[1])
        weights = torch.rand(shape, generator=generator, device=a.device, dtype=a.dtype) * 2 - 1
        return channel_sum(weights, a)


_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB to gray


def sobel_edges(x: Tensor) -> Tensor:
    """(B, C, *spatial) -> (B, *spatial) edge strength: the mean over axes of the absolute
    Sobel derivative of the gray image (luma for 3 channels, else the channel mean), borders
    reflected. On an 8-bit image this is OpenCV's ``0.5 |Sobel_x| + 0.5 |Sobel_y|``.

    Examples:
        >>> import torch
        >>> step = torch.zeros(1, 1, 4, 4)
        >>> step[..., 2:] = 1.0
        >>> sobel_edges(step)[0, 0].tolist()
        [0.0, 2.0, 2.0, 0.0]
    """
    if x.shape[1] == 3:
        luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
        gray = torch.einsum("bc...,c->b...", x, luma).unsqueeze(1)
    else:
        gray = x.mean(dim=1, keepdim=True)
    dims = gray.dim() - 2
    padded = F.pad(gray, [1, 1] * dims, mode="reflect")
    derivative = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
    smoothing = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    total = torch.zeros_like(gray)
    for axis in range(dims):
        kernel = torch.ones((), dtype=x.dtype, device=x.device)
        for other in range(dims):
            part = derivative if other == axis else smoothing
            kernel = torch.tensordot(kernel, part, dims=0)
        conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
        total = total + conv(padded, kernel[None, None]).abs()
    edges: Tensor = total[:, 0] / dims
    return edges


@register("sobel")
class Sobel(Explainer):
    """Sobel edges of the input: a map that knows nothing of the model or the class.

    As pytorch-grad-cam's ``sobel_cam``, on the model's input (1-D, 2-D or 3-D). Every target
    of an image gets the same map; the model runs once, for the scores.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.Sobel(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    layer_means = "input"
    needs_gradients = False
    uses_score = False

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        return every_target(sobel_edges(evidence.activations), evidence)
