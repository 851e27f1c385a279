"""EigenCAM and EigenGradCAM: the first principal component of the layer's evidence."""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import override

from camkit.methods.base import Evidence, Explainer, register
from camkit.methods.gradient import layer_gradients, per_target


def first_component(evidence: Tensor) -> Tensor:
    """Projection of (N, C, *spatial) evidence on its first principal direction: (N, *spatial).

    Each of the N samples is a matrix of positions x channels, centred over positions; the
    economy SVD runs batched on the device. A principal direction's sign is arbitrary, so the
    projection is signed to correlate positively with the channel sum ``sum_k evidence^k``:
    maps are never inverted at random.

    Examples:
        >>> import torch
        >>> a = torch.zeros(1, 2, 2, 2)
        >>> a[0, :, 0, 0] = 3.0  # one bright location
        >>> first_component(a).argmax().item()
        0
    """
    # A sample with NaN or inf (a broken input) would fail the SVD of the whole batch: it is
    # decomposed as zeros and its map made NaN, which the pipeline turns into 0 with a warning.
    finite = torch.isfinite(evidence.flatten(1)).all(dim=1)
    evidence = torch.where(finite.reshape(-1, *[1] * (evidence.dim() - 1)), evidence, 0.0)
    matrix = evidence.flatten(2).transpose(1, 2)  # (N, positions, C)
    centred = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, 0, :, None])[..., 0]  # (N, positions)
    reference = evidence.sum(dim=1).flatten(1)
    agreement = (
        (projection - projection.mean(dim=1, keepdim=True))
        * (reference - reference.mean(dim=1, keepdim=True))
    ).sum(dim=1)
    sign = torch.where(agreement < 0, -1.0, 1.0).to(projection.dtype)
    signed = torch.where(finite[:, None], projection * sign[:, None], torch.nan)
    return signed.reshape(evidence.shape[0], *evidence.shape[2:])


@register("eigencam")
class EigenCAM(Explainer):
    """EigenCAM (Muhammad & Yeasin 2020): first principal component of A; class-agnostic.

    No gradient: one forward pass. Every target of an input gets the same map.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.EigenCAM(net)(torch.rand(2, 3, 16, 16), targets=camkit.TopK(2)).maps.shape
        torch.Size([2, 2, 16, 16])
    """

    needs_gradients = False

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        assert evidence.scores is not None
        component = first_component(evidence.activations).unsqueeze(1)
        return component.expand(-1, evidence.scores.shape[1], *component.shape[2:])


@register("eigengradcam")
class EigenGradCAM(Explainer):
    """EigenGradCAM: first principal component of ``g * A`` per target (class-specific).

    Signed to correlate positively with ``sum_k g^k * A^k`` (the HiResCAM map).

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.EigenGradCAM(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        g, _ = layer_gradients(evidence)
        product = g * per_target(evidence.activations)  # (rows, K, C, *spatial)
        maps: Tensor = first_component(product.flatten(0, 1)).unflatten(0, product.shape[:2])
        return maps
