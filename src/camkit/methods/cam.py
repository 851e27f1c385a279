"""CAM (Zhou et al. 2016): the class's linear-head weights applied to the last feature map."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from camkit.layers import LayerSpec
from camkit.methods.base import Evidence, Explainer, MethodOptions, channel_sum, register

if TYPE_CHECKING:
    from typing_extensions import Unpack

Head = nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d


def _as_linear(module: nn.Module) -> tuple[Tensor, Tensor | None] | None:
    """(weight (out, in), bias) of a linear map: a Linear layer or a 1 x 1 convolution."""
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    if (
        isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        and module.groups == 1
        and all(k == 1 for k in module.kernel_size)
    ):
        return module.weight.flatten(1), module.bias
    return None


def head_weights(model: nn.Module, evidence: Evidence, head: Head | None = None) -> Tensor:
    """The (classes, C) weights that map the global average of the layer to the logits.

    The heads CAM is defined for: global average pooling, then a linear layer or a 1 x 1
    convolution (before or after the pooling: both are linear, so they commute), or no layer at
    all, when the layer has one map per class (the Network-in-Network head: the class's score is
    the mean of its own map, and CAM is that map). Verified numerically, ``head(mean(A)) ==
    logits``, so an MLP or another layer in between is rejected.
    """
    logits = evidence.logits
    if logits is None:
        raise ValueError(
            "CAM explains class indices; targets must be classes, not a score function"
        )
    pooled = evidence.activations.mean(dim=evidence.spatial)
    channels, classes = pooled.shape[1], logits.shape[1]
    if head is not None:
        found = [_as_linear(head)]
    else:
        found = [_as_linear(m) for m in model.modules()]
        found = [f for f in found if f is not None and tuple(f[0].shape) == (classes, channels)]
        if channels == classes:  # the class maps themselves, averaged into the scores
            identity = torch.eye(classes, dtype=pooled.dtype, device=pooled.device)
            found.insert(0, (identity, None))
    # Agreement to rounding error of the model's dtype; a different head misses by O(logits).
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), pooled.dtype)
    tolerance = torch.finfo(dtype).eps ** 0.5 * (1 + float(logits.abs().max()))
    for candidate in reversed(found):
        assert candidate is not None  # a given head is checked in CAM.__init__
        weight, bias = candidate
        weight = weight.detach().to(pooled.dtype)
        if weight.shape != (classes, channels):
            continue
        bias = None if bias is None else bias.detach().to(pooled.dtype)
        predicted = F.linear(pooled, weight, bias).float()
        if float((predicted - logits).abs().max()) <= tolerance:
            return weight
    raise ValueError(
        f"CAM needs the layer {evidence.layer!r} to be followed by global average pooling and "
        f"one linear layer or 1 x 1 convolution ({channels} -> {classes}), or to hold one map "
        "per class that is averaged into the scores, and this model's scores are not "
        "Linear(mean(A)) at that layer; use camkit.GradCAM, which works with any head (and equals "
        "CAM where such a head exists)"
    )


@register("cam")
class CAM(Explainer):
    """CAM: ``CAM^c = sum_k w_k^c A^k`` with `w` the weights of the GAP + linear head.

    Needs no gradient: one forward pass under `torch.inference_mode`. The head is found (and
    checked) automatically, or given as `head=`. The map does not depend on `score=`.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> camkit.CAM(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    needs_gradients = False
    uses_score = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        head: Head | None = None,
        **options: Unpack[MethodOptions],
    ) -> None:
        super().__init__(model, layer, **options)
        if head is not None and (not isinstance(head, nn.Module) or _as_linear(head) is None):
            raise TypeError(
                "head must be the model's classifier, an nn.Linear or a 1 x 1 convolution (or "
                f"None: found automatically), not {type(head).__name__}: e.g. head=model.fc"
            )
        self.head = head

    @override
    def weigh(self, evidence: Evidence) -> Tensor:
        head = head_weights(self.model, evidence, self.head)
        assert evidence.targets is not None  # head_weights rejected score functions
        rows = evidence.targets.repeat(evidence.copies, 1)  # each noisy copy explains its input's
        weights = head[rows]  # (rows, K, C)
        return channel_sum(weights, evidence.activations)
