"""Step 1 of the pipeline: one forward pass that keeps the chosen layers' outputs.

Hooks exist only inside `capture(...)`; they are removed on the way out, also when the forward
pass raises. Two details make the captured tensors safe to differentiate:

* The forward pass runs without recording a graph until the first hooked layer. That layer's
  output becomes a leaf that requires grad and recording starts there, so the backward pass never
  goes below the layer, parameters' ``.grad`` is never touched, and it works under
  ``torch.no_grad()`` / ``torch.inference_mode()`` and with frozen parameters.
* The network continues on a *copy* of the output, so an in-place op that follows the layer
  (``ReLU(inplace=True)`` in VGG) cannot overwrite the captured activations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn


@contextlib.contextmanager
def capture(
    layers: Sequence[tuple[str, nn.Module]], batch_size: int, *, differentiable: bool
) -> Iterator[dict[str, Tensor]]:
    """Hook `layers` for one forward pass; yields name -> captured output, filled by the pass.

    With ``differentiable=True`` the caller must run the forward pass under ``torch.no_grad()``;
    the first hooked layer switches gradient recording on (restored when that context exits).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
        >>> with capture([("0", net[0])], 2, differentiable=False) as captured:
        ...     _ = net(torch.randn(2, 3, 5, 5))
        >>> tuple(captured["0"].shape), bool((captured["0"] < 0).any())  # not clipped by the ReLU
        ((2, 4, 3, 3), True)
    """
    captured: dict[str, Tensor] = {}

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> Tensor:
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"layer {name!r} returns {type(output).__name__}, not a tensor: choose a layer "
                    "whose output is the feature map itself (e.g. a block, a conv or an activation)"
                )
            if name in captured:
                raise ValueError(
                    f"layer {name!r} ran more than once in one forward pass (a shared module), so "
                    "its output is ambiguous: choose a layer that runs once, e.g. its parent block"
                )
            if output.dim() == 0 or output.shape[0] != batch_size:
                raise ValueError(
                    f"layer {name!r} returned shape {tuple(output.shape)}, whose first dimension "
                    f"is not the batch size {batch_size}: is the batch dimension missing? A single "
                    "image (C, H, W) needs x.unsqueeze(0)"
                )
            if differentiable and not output.requires_grad:
                # First hooked layer: record the graph from here to the output, and nothing below.
                torch.set_grad_enabled(True)
                output = output.detach().requires_grad_()
            captured[name] = output
            return output.clone()

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in layers]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
