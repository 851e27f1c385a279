"""Forward-only rules on the activations alone: FEM and Deep Feature Factorization."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from typing_extensions import Unpack, override

from camkit import seeds
from camkit.errors import whole_number
from camkit.layers import LayerSpec
from camkit.methods.base import Evidence, Explainer, MethodOptions, every_target, register
from camkit.methods.cam import head_weights


@register("fem")
class FEM(Explainer):
    """FEM, the Feature Explanation Method (Fuad et al. 2020): each channel's positions above
    ``mean + k * std`` (its salient part), weighted by the channel's mean and summed.

    ``FEM = sum_c mean(A_c) * [A_c > mean(A_c) + k std(A_c)]``; class-agnostic, one forward
    pass. ``weights="share"`` is pytorch-grad-cam's variant, ``sum_c share_c * A_c`` with
    ``share_c`` the fraction of the channel's positions above the threshold.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.FEM(net, k=1.0)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    needs_gradients = False
    uses_score = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        k: float = 2.0,
        weights: Literal["mean", "share"] = "mean",
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        if weights not in ("mean", "share"):
            raise ValueError(f"weights must be 'mean' (the paper) or 'share', got {weights!r}")
        self.k = float(k)
        self.weights = weights

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        a, spatial = evidence.activations, evidence.spatial
        mean = a.mean(dim=spatial, keepdim=True)
        salient = a > mean + self.k * a.std(dim=spatial, correction=0, keepdim=True)
        if self.weights == "mean":
            fem = (mean * salient).sum(dim=1)
        else:
            fem = (salient.to(a.dtype).mean(dim=spatial, keepdim=True) * a).sum(dim=1)
        return every_target(fem, evidence)


def factorise(
    activations: Tensor, concepts: int, *, steps: int = 200, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Non-negative factorisation of each sample's activations into `concepts` concepts.

    (N, C, *spatial) -> concept vectors (N, C, concepts) and their maps (N, concepts, *spatial),
    ``A - offset ~= W @ H`` with each channel shifted by its minimum (as in pytorch-grad-cam),
    which is added back to the concept vectors. `steps` sweeps of hierarchical alternating
    least squares (HALS), all samples at once on the activations' device, from a seeded random
    start.

    Examples:
        >>> import torch
        >>> w, h = factorise(torch.rand(2, 8, 4, 4), 3)
        >>> tuple(w.shape), tuple(h.shape)
        ((2, 8, 3), (2, 3, 4, 4))
    """
    v = activations.flatten(2)  # (N, C, P)
    offset = v.amin(dim=2, keepdim=True)
    v = v - offset
    generator = seeds.generator(seed, v.device)
    scale = (v.mean(dim=(1, 2), keepdim=True) / concepts).sqrt()
    shape_w, shape_h = (v.shape[0], v.shape[1], concepts), (v.shape[0], concepts, v.shape[2])
    w = torch.rand(shape_w, generator=generator, device=v.device, dtype=v.dtype) * scale
    h = torch.rand(shape_h, generator=generator, device=v.device, dtype=v.dtype) * scale
    tiny = torch.finfo(v.dtype).eps
    for _ in range(steps):
        h = _hals(h, w.transpose(1, 2) @ v, w.transpose(1, 2) @ w, tiny)
        w = _hals(w.transpose(1, 2), h @ v.transpose(1, 2), h @ h.transpose(1, 2), tiny)
        w = w.transpose(1, 2)
    return w + offset, h.unflatten(2, activations.shape[2:])


def _hals(h: Tensor, wtv: Tensor, wtw: Tensor, tiny: float) -> Tensor:
    """One sweep of hierarchical alternating least squares over the rows of `h` (N, K, P)
    for ``V ~= W H``, given ``W^T V`` and ``W^T W``: each row the non-negative least-squares
    optimum with the others fixed."""
    rows = list(h.unbind(dim=1))
    for j in range(len(rows)):
        current = torch.stack(rows, dim=1)
        residual = wtv[:, j] - (wtw[:, j, :, None] * current).sum(dim=1)
        rows[j] = (rows[j] + residual / (wtw[:, j, j, None] + tiny)).clamp_min(0)
    return torch.stack(rows, dim=1)


@register("dff")
class DeepFeatureFactorization(Explainer):
    """Deep Feature Factorization (Collins et al. 2018): the layer's activations factorised
    into `concepts` non-negative concepts, each with a map; a class is explained by the map of
    the concept its linear head scores highest.

    Each image is factorised on its own (pytorch-grad-cam factorises a batch jointly, which
    makes an image's map depend on the rest of its batch). Needs CAM's head, GAP + linear;
    all the concepts are `factorise(evidence.activations, concepts)`.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.DeepFeatureFactorization(net, concepts=3)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    needs_gradients = False
    uses_score = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        concepts: int = 5,
        steps: int = 200,
        seed: int = 0,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        whole_number("concepts", concepts, 256, "factors of the activations")
        whole_number("steps", steps, 10_000, "iterations of the factorisation")
        self.concepts, self.steps, self.seed = concepts, steps, seed

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        head = head_weights(self.model, evidence, None)  # (classes, C)
        assert evidence.targets is not None
        vectors, maps = factorise(
            evidence.activations, self.concepts, steps=self.steps, seed=self.seed
        )
        concept_scores = head.to(vectors.dtype) @ vectors  # (rows, classes, concepts)
        rows = evidence.targets.repeat(evidence.copies, 1)  # (rows, K)
        chosen = concept_scores.gather(1, rows[:, :, None].expand(-1, -1, self.concepts)).argmax(
            dim=2
        )  # (rows, K): the concept that scores each target highest
        index = chosen.reshape(*chosen.shape, *[1] * len(evidence.spatial))
        return maps.gather(1, index.expand(-1, -1, *maps.shape[2:]))
