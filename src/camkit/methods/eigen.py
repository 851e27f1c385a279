"""EigenCAM and EigenGradCAM: the first principal component of the layer's evidence."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from typing_extensions import Unpack, override

from camkit.layers import LayerSpec
from camkit.methods.base import Evidence, Explainer, MethodOptions, every_target, register
from camkit.methods.gradient import layer_gradients, per_target

Sign = Literal["sum", "extreme"]


def first_component(evidence: Tensor, sign: Sign = "sum") -> Tensor:
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
    finite, centred = _centred_positions(evidence)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, 0, :, None])[..., 0]  # (N, positions)
    return _signed(projection, evidence, finite, sign)


def _centred_positions(evidence: Tensor) -> tuple[Tensor, Tensor]:
    """Which samples are finite, and (N, positions, C) positions centred over positions.

    A sample with NaN or inf (a broken input) would fail the decomposition of the whole batch:
    it is decomposed as zeros and its map made NaN, which the pipeline turns into 0 with a
    warning."""
    finite = torch.isfinite(evidence.flatten(1)).all(dim=1)
    evidence = torch.where(finite.reshape(-1, *[1] * (evidence.dim() - 1)), evidence, 0.0)
    matrix = evidence.flatten(2).transpose(1, 2)
    return finite, matrix - matrix.mean(dim=1, keepdim=True)


def _signed(projection: Tensor, evidence: Tensor, finite: Tensor, sign: Sign) -> Tensor:
    """(N, positions) projections with the sign fixed, shaped like the evidence's maps.

    ``"sum"``: correlating positively with the channel sum; ``"extreme"`` (Seg-Eigen-CAM's
    rule): the larger magnitude is positive."""
    if sign == "extreme":
        flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    else:
        reference = evidence.sum(dim=1).flatten(1)
        agreement = (
            (projection - projection.mean(dim=1, keepdim=True))
            * (reference - reference.mean(dim=1, keepdim=True))
        ).sum(dim=1)
        flip = agreement < 0
    factor = torch.where(flip, -1.0, 1.0).to(projection.dtype)
    signed = torch.where(finite[:, None], projection * factor[:, None], torch.nan)
    return signed.reshape(evidence.shape[0], *evidence.shape[2:])


Kernel = Literal["linear", "poly", "rbf", "sigmoid", "cosine"]


def kernel_component(
    evidence: Tensor, kernel: Kernel = "sigmoid", gamma: float | None = None
) -> Tensor:
    """Projection of (N, C, *spatial) evidence on its first kernel principal component.

    As scikit-learn's ``KernelPCA(n_components=1)``: positions centred, the kernel matrix
    between positions centred in feature space, its leading eigenvector scaled by the square
    root of its eigenvalue. `gamma` None is 1 / C; ``coef0`` is 1 and the degree 3. Signed like
    `first_component`.

    Examples:
        >>> import torch
        >>> a = torch.zeros(1, 2, 2, 2)
        >>> a[0, :, 0, 0] = 3.0
        >>> kernel_component(a, "rbf").argmax().item()
        0
    """
    finite, x = _centred_positions(evidence)
    g = 1.0 / x.shape[2] if gamma is None else gamma
    inner = x @ x.transpose(1, 2)
    if kernel == "linear":
        k = inner
    elif kernel == "poly":
        k = (g * inner + 1.0) ** 3
    elif kernel == "rbf":
        k = torch.exp(-g * torch.cdist(x, x).square())
    elif kernel == "sigmoid":
        k = torch.tanh(g * inner + 1.0)
    elif kernel == "cosine":
        norms = x.norm(dim=2, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        k = (x / norms) @ (x / norms).transpose(1, 2)
    else:
        raise ValueError(f"kernel must be linear, poly, rbf, sigmoid or cosine, got {kernel!r}")
    centred = (
        k
        - k.mean(dim=1, keepdim=True)
        - k.mean(dim=2, keepdim=True)
        + k.mean(dim=(1, 2), keepdim=True)
    )
    values, vectors = torch.linalg.eigh(centred)
    projection = vectors[..., -1] * values[:, -1:].clamp_min(0).sqrt()
    return _signed(projection, evidence, finite, "sum")


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
    uses_score = False

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        return every_target(first_component(evidence.activations), evidence)


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


@register("kpcacam")
class KPCACAM(Explainer):
    """KPCA-CAM (Karmani et al. 2024): EigenCAM with kernel PCA, the first kernel principal
    component of A; class-agnostic, one forward pass.

    `kernel` is one of linear, poly, rbf, sigmoid (the default, as in pytorch-grad-cam) and
    cosine; `gamma` None is 1 / channels. With the linear kernel it is EigenCAM. The kernel
    matrix is positions x positions: memory grows with the square of the layer's size.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.KPCACAM(net, kernel="rbf")(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    needs_gradients = False
    uses_score = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        kernel: Kernel = "sigmoid",
        gamma: float | None = None,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        if kernel not in ("linear", "poly", "rbf", "sigmoid", "cosine"):
            raise ValueError(f"kernel must be linear, poly, rbf, sigmoid or cosine, got {kernel!r}")
        if gamma is not None and not gamma > 0:
            raise ValueError(f"gamma must be positive (or None: 1 / channels), got {gamma!r}")
        self.kernel: Kernel = kernel
        self.gamma = gamma

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        component = kernel_component(evidence.activations, self.kernel, self.gamma)
        return every_target(component, evidence)


@register("segeigencam")
class SegEigenCAM(Explainer):
    """Seg-Eigen-CAM (Chung & Ying 2025): the first principal component of ``|g| * A`` per
    target, signed so that its larger magnitude is positive (the paper's rule).

    Made for segmentation (a region score as target), it works for any target.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.SegEigenCAM(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        g, _ = layer_gradients(evidence)
        product = g.abs() * per_target(evidence.activations)
        flat = first_component(product.flatten(0, 1), sign="extreme")
        maps: Tensor = flat.unflatten(0, product.shape[:2])
        return maps
