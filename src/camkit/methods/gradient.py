"""Gradient rules: channel (or location) weights from dS/dA, the gradient of the score."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from typing_extensions import override

from camkit.errors import first_line
from camkit.explanation import Explanation
from camkit.inputs import Inputs
from camkit.layers import LayerSpec
from camkit.methods.base import Evidence, Explainer, MethodOptions, channel_sum, register

if TYPE_CHECKING:
    from typing_extensions import Unpack
from camkit.smoothing import Noise
from camkit.targets import ClassScore, ReST, Score, Targets


def layer_gradients(evidence: Evidence) -> tuple[Tensor, tuple[int, ...]]:
    """dS/dA (rows, K, C, *spatial) and its spatial dimensions."""
    assert evidence.gradients is not None  # the base computes them for needs_gradients methods
    return evidence.gradients, tuple(d + 1 for d in evidence.spatial)


def per_target(activations: Tensor) -> Tensor:
    """(rows, C, *spatial) -> (rows, 1, C, *spatial), to broadcast against gradients."""
    return activations.unsqueeze(1)


@register("gradcam")
class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k alpha_k^c A^k)``, ``alpha = mean_ij dS/dA``.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.GradCAM(net)(torch.rand(2, 3, 16, 16), targets=3).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        gradients, spatial = layer_gradients(evidence)
        return channel_sum(gradients.mean(dim=spatial), evidence.activations)


@register("gradcam-counterfactual")
class CounterfactualGradCAM(Explainer):
    """Counterfactual Grad-CAM (Selvaraju et al. 2017, §5): Grad-CAM with the gradient negated,
    ``ReLU(sum_k mean_ij(-dS/dA^k) A^k)``: the regions whose removal would raise the class's
    score, the evidence against it.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.CounterfactualGradCAM(net)(torch.rand(2, 3, 16, 16), targets=0).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        gradients, spatial = layer_gradients(evidence)
        return channel_sum(-gradients.mean(dim=spatial), evidence.activations)


@register("shapleycam")
class ShapleyCAM(GradCAM):
    """ShapleyCAM (Cai 2025, arXiv 2501.06261): Grad-CAM with the gradient replaced by its
    second-order Shapley estimate, ``w_k = mean_ij (g - 1/2 H A)^k``, ``H A`` the Hessian of the
    score times the activations.

    By default class targets are scored with the paper's ReST score (`camkit.targets.ReST`,
    ``S_c + log p_c``); ``rest=False`` keeps the logit, where a piecewise-linear head has
    ``H = 0`` and ShapleyCAM is Grad-CAM. Costs one backward pass and one Hessian-vector
    product per target. Attention runs on PyTorch's plain kernel for the call (the fused ones have
    no second derivative).

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.ShapleyCAM(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        rest: bool = True,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        self.rest = rest

    @override
    def _explain(self, inputs: Inputs, targets: Targets, score: Score) -> Explanation:
        if self.rest and not callable(targets) and not isinstance(targets, ClassScore):
            targets = ReST(targets)
        return super()._explain(inputs, targets, score)

    @override
    def _recording(self, from_input: bool = False) -> contextlib.AbstractContextManager[object]:
        # Fused attention kernels (flash, memory-efficient) have no second derivative; the
        # plain one computes the same attention and has.
        stack = contextlib.ExitStack()
        stack.enter_context(super()._recording(from_input))
        stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        return stack

    @override
    def _differentiate(self, scores: Tensor, activations: Sequence[Tensor]) -> list[Tensor]:
        per_target: list[list[Tensor]] = []
        for k in range(scores.shape[1]):
            grads = torch.autograd.grad(
                scores[:, k].sum(), activations, create_graph=True, allow_unused=True
            )
            grads = tuple(
                torch.zeros_like(a) if g is None else g
                for a, g in zip(activations, grads, strict=True)
            )
            curved = [i for i, g in enumerate(grads) if g.requires_grad]
            hvps: dict[int, Tensor | float] = dict.fromkeys(range(len(grads)), 0.0)
            if curved:
                try:
                    found = torch.autograd.grad(
                        [grads[i] for i in curved],
                        [activations[i] for i in curved],
                        grad_outputs=[activations[i].detach() for i in curved],
                        retain_graph=True,
                        allow_unused=True,
                    )
                except RuntimeError as error:  # an operation without a second derivative
                    raise ValueError(
                        "ShapleyCAM needs second derivatives of the score, and an operation "
                        f"between the layer and the score has none ({first_line(error)}): use "
                        "gradcam, or a layer after that operation"
                    ) from error
                hvps.update(
                    {i: 0.0 if h is None else h for i, h in zip(curved, found, strict=True)}
                )
            per_target.append([(g - 0.5 * hvps[i]).detach() for i, g in enumerate(grads)])
        return [torch.stack(layer, dim=1) for layer in zip(*per_target, strict=True)]


def plus_plus_weights(d1: Tensor, d2: Tensor, d3: Tensor, total: Tensor) -> Tensor:
    """Grad-CAM++ channel weights (rows, K, C) from the first three derivatives of the score.

    ``alpha = d2 / (2 d2 + total * d3)`` (0 where the denominator is 0) and
    ``w = sum_ij alpha * ReLU(d1)``; `total` is ``sum_ab A_ab`` shaped (rows, 1, C, 1, ...).
    """
    denominator = 2 * d2 + total * d3
    defined = denominator != 0
    alpha = torch.where(defined, d2 / torch.where(defined, denominator, 1.0), 0.0)
    return (alpha * d1.clamp_min(0)).flatten(3).sum(dim=3)


def _channel_totals(evidence: Evidence, activations: Tensor) -> Tensor:
    """sum_ab A_ab per channel, shaped (rows, 1, C, 1, ...) to broadcast against gradients."""
    return per_target(activations.sum(dim=evidence.spatial, keepdim=True))


@register("gradcam++")
class GradCAMPlusPlus(Explainer):
    """Grad-CAM++ (Chattopadhyay et al. 2018), closed form for ``Y = exp(S)``.

    ``alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3)`` (0 where the denominator is 0) and
    ``w_k = sum_ij alpha_ij ReLU(g_ij)`` with ``g = dS/dA``; exact when the path from A to S is
    piecewise linear. `raw` omits the positive factor exp(S) of dY/dA (it overflows for large
    scores and cancels in the normalised map).

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.GradCAMPlusPlus(net)(torch.rand(2, 3, 16, 16), targets=camkit.TopK(2)).maps.shape
        torch.Size([2, 2, 16, 16])
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        g, _ = layer_gradients(evidence)
        g2 = g.square()
        totals = _channel_totals(evidence, evidence.activations)
        return channel_sum(plus_plus_weights(g, g2, g2 * g, totals), evidence.activations)


@register("smoothgradcam++")
class SmoothGradCAMPlusPlus(Explainer):
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with derivatives averaged over noise.

    ``d_p = mean over copies of g^p`` (p = 1, 2, 3) replace g, g^2, g^3 in Grad-CAM++'s weights,
    and the map is ``sum_k w_k mean(A^k)``. All `copies` noisy copies (noise std `sigma` times
    each input's value range) go through the model as one batch; ``copies=1, sigma=0`` is
    Grad-CAM++. torchcam's version takes A from one extra clean pass instead of the mean.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> explain = camkit.SmoothGradCAMPlusPlus(net, copies=4, sigma=0.1, seed=0)
        >>> explain(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        copies: int = 8,
        sigma: float = 0.15,
        seed: int | None = None,
        **options: Unpack[MethodOptions],
    ) -> None:
        if "smooth" in options:
            raise TypeError(
                "smoothgradcam++ sets its own noise (copies=, sigma=, seed=); pass those instead "
                "of smooth=, or use gradcam++ with smooth=camkit.Noise(...)"
            )
        rest: dict[str, Any] = dict(options)  # without smooth, refused above
        super().__init__(model, layer, smooth=Noise(copies, sigma, seed), **rest)

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        g, _ = layer_gradients(evidence)
        copies = evidence.copies

        def mean(t: Tensor) -> Tensor:
            averaged: Tensor = t.unflatten(0, (copies, -1)).mean(dim=0)
            return averaged

        g2 = g.square()
        totals = _channel_totals(evidence, mean(evidence.activations))
        weights = plus_plus_weights(mean(g), mean(g2), mean(g2 * g), totals)
        # One weight per input, applied to every copy: the pipeline's mean over the copies then
        # gives sum_k w_k mean(A^k).
        return channel_sum(weights.repeat(copies, 1, 1), evidence.activations)


@register("hirescam")
class HiResCAM(Explainer):
    """HiResCAM (Draelos & Carin 2020): ``sum_k g^k * A^k``, element-wise, no spatial averaging.

    On a GAP + linear head it equals CAM; unlike Grad-CAM it cannot show regions that the
    averaging of gradients would credit to the wrong place.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.HiResCAM(net)(torch.rand(1, 3, 16, 16)).raw[0].shape
        torch.Size([1, 1, 14, 14])
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        g, _ = layer_gradients(evidence)
        return (g * per_target(evidence.activations)).sum(dim=2)


@register("gradcam-elementwise")
class GradCAMElementWise(Explainer):
    """Element-wise Grad-CAM (as in pytorch-grad-cam): ``sum_k ReLU(g^k * A^k)``.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.GradCAMElementWise(net)(torch.rand(1, 3, 16, 16)).maps.shape
        torch.Size([1, 1, 16, 16])
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        g, _ = layer_gradients(evidence)
        return (g * per_target(evidence.activations)).clamp_min(0).sum(dim=2)


@register("xgradcam")
class XGradCAM(Explainer):
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij A^k_ij g^k_ij / sum_ij A^k_ij``.

    A channel whose activations sum to 0 gets weight 0; pytorch-grad-cam adds 1e-7 to the
    denominator instead.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.XGradCAM(net)(torch.rand(1, 3, 16, 16)).maps.shape
        torch.Size([1, 1, 16, 16])
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        g, spatial = layer_gradients(evidence)
        a = per_target(evidence.activations)
        totals = a.sum(dim=spatial)  # (rows, 1, C)
        defined = totals != 0
        weights = torch.where(
            defined, (g * a).sum(dim=spatial) / torch.where(defined, totals, 1.0), 0.0
        )
        return channel_sum(weights, evidence.activations)


@register("layercam")
class LayerCAM(Explainer):
    """LayerCAM (Jiang et al. 2021): ``sum_k ReLU(g^k) * A^k``; several layers fuse well.

    Examples:
        Two layers, fused by their mean as LayerCAM's paper does with its maps:

        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.LayerCAM(net, layer=["0", "1"])(torch.rand(1, 3, 16, 16)).layers
        ('0', '1')
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        g, _ = layer_gradients(evidence)
        return (g.clamp_min(0) * per_target(evidence.activations)).sum(dim=2)
