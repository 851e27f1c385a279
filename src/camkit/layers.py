"""Which layer to explain: names, modules, and the automatic choice."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

LayerSpec = str | nn.Module | Sequence[str | nn.Module] | None

_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)
# Resampling to a fixed output size is not a feature map worth explaining: skip it when choosing.
_RESAMPLERS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside `DataParallel` / `DistributedDataParallel`; the model itself otherwise.

    Explaining needs no data parallelism, and hooks on a replicated module would fire once per
    replica.
    """
    while isinstance(model, _WRAPPERS):
        model = model.module
    return model


def _spellings(name: str) -> list[str]:
    # Accept "features[28]" as well as "features.28", and names written for the wrapped model.
    name = re.sub(r"\[(\d+)\]", r".\1", name).strip(".")
    return [name, name.removeprefix("module.")]


def resolve_layers(model: nn.Module, layer: LayerSpec) -> list[tuple[str, nn.Module]]:
    """Turn a layer spec (name, module, or a list of those) into (dotted name, module) pairs.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> [name for name, _ in resolve_layers(net, ["0", net[1]])]
        ['0', '1']
    """
    if layer is None:
        raise ValueError("resolve_layers needs a layer; use find_spatial_layer for layer=None")
    specs = [layer] if isinstance(layer, (str, nn.Module)) else list(layer)
    if not specs:
        raise ValueError("layer is an empty list: give at least one layer name or module")
    named = dict(model.named_modules())
    by_identity = {id(module): name for name, module in named.items()}
    resolved = []
    for spec in specs:
        if isinstance(spec, nn.Module):
            if id(spec) not in by_identity:
                raise ValueError(
                    f"the layer module {type(spec).__name__} is not part of the model "
                    f"{type(model).__name__}: pass a submodule of the model or its dotted name"
                )
            resolved.append((by_identity[id(spec)], spec))
            continue
        if not isinstance(spec, str):
            raise TypeError(
                f"a layer is a dotted name or an nn.Module, not {type(spec).__name__}: {spec!r}"
            )
        name = next((n for n in _spellings(spec) if n and n in named), None)
        if name is None:
            close = difflib.get_close_matches(spec, [n for n in named if n], n=5, cutoff=0.5)
            hint = f"closest names: {', '.join(repr(c) for c in close)}" if close else ""
            raise ValueError(
                f"no layer named {spec!r} in {type(model).__name__}; {hint}"
                f"{'; ' if hint else ''}all names are listed by model.named_modules()"
            )
        resolved.append((name, named[name]))
    return resolved


def find_spatial_layer(model: nn.Module, x: Tensor) -> str:
    """The last layer, in execution order, whose output is (B, C, *spatial) like the input.

    Runs one forward pass of the first input under `torch.inference_mode`. Containers count too,
    so for a torchvision ResNet this is ``"layer4"`` rather than its last ReLU. Layers that run
    more than once per forward pass (shared activations) and adaptive pooling are skipped.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> find_spatial_layer(net, torch.rand(1, 3, 8, 8))
        '1'
    """
    finished: list[str] = []
    runs: dict[str, int] = {}

    def recorder(name: str, module: nn.Module):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            runs[name] = runs.get(name, 0) + 1
            if (
                isinstance(output, Tensor)
                and output.dim() == x.dim()
                and not isinstance(module, _RESAMPLERS)
            ):
                finished.append(name)

        return hook

    handles = [
        module.register_forward_hook(recorder(name, module))
        for name, module in model.named_modules()
        if name
    ]
    try:
        with torch.inference_mode():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    candidates = [name for name in finished if runs[name] == 1]
    if not candidates:
        raise ValueError(
            f"found no layer in {type(model).__name__} whose output has the input's layout "
            f"(B, C, *spatial) with {x.dim() - 2} spatial dimension(s); pass layer=... explicitly"
        )
    return candidates[-1]
