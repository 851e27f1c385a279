"""Step 1 of the pipeline: one forward pass that keeps the chosen layers' outputs.

Hooks exist only inside `capture(...)`; they are removed on the way out, also when the forward
pass raises. Two details make the captured tensors safe to differentiate:

* The forward pass runs without recording a graph until the first hooked layer. That layer's
  output becomes a leaf that requires grad and recording starts there, so the backward pass never
  goes below the layer, parameters' ``.grad`` is never touched, and it works under
  ``torch.no_grad()`` / ``torch.inference_mode()`` and with frozen parameters.
* The network continues on a *copy* of the output, so an in-place op that follows the layer
  (``ReLU(inplace=True)`` in VGG) cannot overwrite the captured activations.

Every hook camkit registers acts only on the thread that registered it (`hook_here`), so one
explainer, or one model, can be used from several threads at once: each call sees its own
forward passes only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from camkit.errors import first_line
from camkit.inputs import Inputs

ForwardHook = Callable[..., Any]  # (module, inputs, output), or (module, inputs) before


def hook_here(
    module: nn.Module, hook: ForwardHook, *, pre: bool = False, with_kwargs: bool = False
) -> RemovableHandle:
    """Register a forward (or forward pre-) hook that runs only for forward passes made by the
    calling thread; other threads' passes through the same module go by untouched.

    Examples:
        >>> import threading, torch
        >>> layer, seen = torch.nn.Identity(), []
        >>> handle = hook_here(layer, lambda m, i, o: seen.append(o.shape))
        >>> worker = threading.Thread(target=layer, args=(torch.zeros(2),))
        >>> worker.start(); worker.join(); _ = layer(torch.zeros(3)); handle.remove()
        >>> seen
        [torch.Size([3])]
    """
    owner = threading.get_ident()

    def guarded(*arguments: Any) -> Any:
        return hook(*arguments) if threading.get_ident() == owner else None

    if pre:
        return module.register_forward_pre_hook(guarded, with_kwargs=with_kwargs)
    return module.register_forward_hook(guarded, with_kwargs=with_kwargs)


@contextlib.contextmanager
def removing(handles: Sequence[RemovableHandle]) -> Iterator[None]:
    """Remove the hooks on the way out, also when the body raises."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def run_model(model: nn.Module, x: Tensor | Inputs, shape: Sequence[int] | None = None) -> Any:
    """`model(x)` (or the model called on all of `Inputs`), with a failure of the model on this
    input raised as a `ValueError` that names the input's shape (`shape`, if `x` is part of a
    larger input) and dtype; the model's own error is chained, and its first line quoted.
    Running out of memory stays what it is.
    """
    spatial = x.spatial if isinstance(x, Inputs) else x
    try:
        return x(model) if isinstance(x, Inputs) else model(x)
    except (RuntimeError, AssertionError) as error:  # models check inputs with assertions too
        if isinstance(error, torch.OutOfMemoryError):
            raise
        raise ValueError(
            f"the model failed on an input of shape {tuple(shape or spatial.shape)} "
            f"({spatial.dtype}): {first_line(error)}. Check the input's channels, size and "
            "dtype against what the model expects"
        ) from error


@contextlib.contextmanager
def batched_only(model: nn.Module, shape: Sequence[int]) -> Iterator[None]:
    """Refuse an unbatched input where PyTorch would quietly accept it.

    A convolution accepts (C, *spatial) without a batch dimension, so a single image (3, H, W)
    passes as a "batch of 3 one-dimensional signals" until it fails somewhere confusing. Each
    convolution that takes inputs of one more dimension than `shape` (the explained input's)
    gets a pre-hook that raises a `ValueError` when it receives an unbatched input.
    """
    input_rank = len(shape)
    convolutions = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.conv._ConvNd) and m.weight.dim() == input_rank + 1
    ]

    def check_for(name: str, module: nn.Module) -> ForwardHook:
        def check(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
            first = inputs[0] if inputs else None
            if isinstance(first, Tensor) and first.dim() == input_rank:
                kind = type(module).__name__
                raise ValueError(
                    f"the input of shape {tuple(shape)} has no batch dimension for this model "
                    f"(layer {name!r}, a {kind}, received it unbatched): a single input needs "
                    "x.unsqueeze(0), e.g. (1, C, H, W) for one image"
                )

        return check

    with removing([hook_here(m, check_for(n, m), pre=True) for n, m in convolutions]):
        yield


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Put back every buffer of a model in training mode (BatchNorm's running statistics,
    ``num_batches_tracked``) as it was before the block: explaining never trains the model."""
    if not model.training:
        yield
        return
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.inference_mode(False), torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


@contextlib.contextmanager
def capture(
    layers: Sequence[tuple[str, nn.Module]], batch_size: int, *, differentiable: bool
) -> Iterator[dict[str, Tensor]]:
    """Hook `layers` for one forward pass; yields name -> captured output, filled by the pass.

    With ``differentiable=True`` the caller must run the forward pass under ``torch.no_grad()``;
    the first hooked layer switches gradient recording on (restored when that context exits).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
        >>> with capture([("0", net[0])], 2, differentiable=False) as captured:
        ...     _ = net(torch.randn(2, 3, 5, 5))
        >>> tuple(captured["0"].shape), bool((captured["0"] < 0).any())  # not clipped by the ReLU
        ((2, 4, 3, 3), True)
    """
    captured: dict[str, Tensor] = {}

    def hook_for(name: str) -> Callable[[nn.Module, object, object], Tensor]:
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

    with removing([hook_here(module, hook_for(name)) for name, module in layers]):
        yield captured
