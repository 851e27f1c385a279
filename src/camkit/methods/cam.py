"""CAM (Zhou et al. 2016): the class's linear-head weights applied to the last feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camkit.layers import LayerSpec
from camkit.methods.base import Evidence, Explainer, channel_sum, register


def find_linear_head(
    model: nn.Module, evidence: Evidence, head: nn.Linear | None = None
) -> nn.Linear:
    """The linear layer that maps the global average of `evidence.activations` to the logits.

    Verified numerically: ``head(mean(A)) == logits``, so a head that is not directly
    global-average-pooling + linear (an MLP, another layer in between) is rejected.
    """
    logits = evidence.logits
    if logits is None:
        raise ValueError(
            "CAM explains class indices; targets must be classes, not a score function"
        )
    pooled = evidence.activations.mean(dim=evidence.spatial)
    channels, classes = pooled.shape[1], logits.shape[1]
    candidates = (
        [head]
        if head is not None
        else [
            m
            for m in model.modules()
            if isinstance(m, nn.Linear) and (m.in_features, m.out_features) == (channels, classes)
        ]
    )
    for linear in reversed(candidates):
        bias = None if linear.bias is None else linear.bias.detach().to(pooled.dtype)
        predicted = F.linear(pooled, linear.weight.detach().to(pooled.dtype), bias).float()
        # Agreement to rounding error of the model's dtype; a different head misses by O(logits).
        tolerance = torch.finfo(linear.weight.dtype).eps ** 0.5 * (1 + float(logits.abs().max()))
        if float((predicted - logits).abs().max()) <= tolerance:
            return linear
    raise ValueError(
        f"CAM needs the layer {evidence.layer!r} to be followed directly by global average pooling "
        f"and one linear layer ({channels} -> {classes}), and this model's scores are not "
        "Linear(mean(A)) at that layer; use camkit.GradCAM, which works with any head (and equals "
        "CAM where such a head exists)"
    )


@register("cam")
class CAM(Explainer):
    """CAM: ``CAM^c = sum_k w_k^c A^k`` with `w` the weights of the GAP + linear head.

    Needs no gradient: one forward pass under `torch.inference_mode`. The head is found (and
    checked) automatically, or given as `head=`. The map does not depend on `score=`.

    Example:
        >>> import torch, camkit
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                           torch.nn.Linear(8, 5)).eval()
        >>> camkit.CAM(net)(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    needs_gradients = False

    def __init__(
        self, model: nn.Module, layer: LayerSpec = None, *, head: nn.Linear | None = None, **options
    ) -> None:
        super().__init__(model, layer, **options)
        if head is not None and not isinstance(head, nn.Linear):
            raise TypeError(
                f"head must be the model's nn.Linear classifier (or None: found automatically), "
                f"not {type(head).__name__}: e.g. head=model.fc"
            )
        self.head = head

    def weigh(self, evidence: Evidence) -> Tensor:
        head = find_linear_head(self.model, evidence, self.head)
        assert evidence.targets is not None  # find_linear_head rejected score functions
        rows = evidence.targets.repeat(evidence.copies, 1)  # each noisy copy explains its input's
        weights = head.weight.detach().to(evidence.activations.dtype)[rows]  # (rows, K, C)
        return channel_sum(weights, evidence.activations)
