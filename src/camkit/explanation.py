"""The result of explaining a batch: one shape whatever the targets."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import Tensor


@dataclasses.dataclass(frozen=True, eq=False)
class Explanation:
    """Maps for K targets of each of B inputs, and what they explain.

    Attributes:
        maps: float32 (B, K, *spatial) in [0, 1], at the input's spatial size (fused over layers).
        raw: one (B, K, *layer_spatial) tensor per layer, after the method's weighting and ReLU,
            before upsampling and normalisation; aligned with `layers`. float32 (float64 for a
            float64 model).
        targets: (B, K) class indices explained, or None when targets was a score function.
        scores: float32 (B, K), the explained scalars (logits, or probabilities with
            ``score="softmax"``; with noise smoothing, their mean over the copies).
        outputs: the model's output for the batch, detached (with noise smoothing: the mean over
            the copies when the output is a tensor, else the copies' outputs, copy-major).
        layers: dotted names of the layers used.
        method: the method's registered name.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> result = camkit.GradCAM(net)(torch.rand(2, 3, 16, 16), targets=[0, 4])
        >>> result.maps.shape, result.raw[0].shape, result.targets.tolist(), result.layers
        (torch.Size([2, 1, 16, 16]), torch.Size([2, 1, 14, 14]), [[0], [4]], ('1',))
    """

    maps: Tensor
    raw: tuple[Tensor, ...]
    targets: Tensor | None
    scores: Tensor
    outputs: Any
    layers: tuple[str, ...]
    method: str

    def __repr__(self) -> str:
        raw = ", ".join(str(tuple(r.shape)) for r in self.raw)
        return (
            f"Explanation(method={self.method!r}, maps={tuple(self.maps.shape)}, raw=[{raw}], "
            f"layers={self.layers})"
        )
