"""Weights files read offline into a model: a PyTorch state dict or checkpoint, or safetensors;
a file that does not fit is one line naming its first missing and unexpected keys, and a
checkpoint of the same network saved under other names maps onto it with `in_order`.

Examples:
    >>> from torch import nn
    >>> theirs = {"_fc.weight": torch.ones(2, 3), "_fc.bias": torch.zeros(2)}
    >>> sorted(in_order(theirs, nn.Linear(3, 2)))
    ['bias', 'weight']
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from camkit.errors import ModelError, first_line
from camkit.files import shown

KeyMap = Callable[[dict[str, Tensor], nn.Module], Mapping[str, Tensor]]
"""A key mapping hook: (the file's state dict, the model) -> the state dict to load."""

CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")
"""Where a training checkpoint keeps its weights (Lightning, common loops, timm's ``model``)."""


def read_state(path: Path) -> dict[str, Tensor]:
    """The tensors in a weights file: safetensors, or a PyTorch state dict or checkpoint (read
    with ``weights_only``: nothing in it runs), with a ``module.`` prefix (DataParallel) gone.

    Raises `ModelError` naming the file for one that is not readable or holds no state dict.
    """
    if path.suffix == ".safetensors":
        return _safetensors(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise ModelError(
            f"{shown(path)} is not a readable PyTorch checkpoint ({first_line(error)})"
        ) from None
    for key in CHECKPOINT_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(
        isinstance(v, Tensor) for v in checkpoint.values()
    ):
        raise ModelError(
            f"{shown(path)} holds no state dict (a mapping of parameter names to tensors)"
        )
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def _safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelError(
            f"{shown(path)}: reading safetensors needs the safetensors package "
            "(pip install safetensors)"
        ) from None
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise ModelError(
            f"{shown(path)} is not a readable safetensors file ({first_line(error)})"
        ) from None


def load_into(
    model: nn.Module,
    state: dict[str, Tensor],
    source: str,
    target: str,
    map_keys: KeyMap | None = None,
) -> None:
    """Load `state` (mapped by `map_keys` first) into `model`; a file that does not fit is a
    `ModelError` in one line: how many keys are missing and unexpected, the first of each, the
    first tensor of another shape, and whether the file would load in order."""
    if map_keys is not None:
        try:
            state = dict(map_keys(state, model))
        except (KeyError, ValueError, TypeError) as error:
            raise ModelError(
                f"{shown(source)}: the key mapping failed ({first_line(error)})"
            ) from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or reshaped):
        model.load_state_dict(state)
        return
    said = []
    if missing:
        said.append(
            f"{len(missing)} of the model's {len(own)} keys are missing (first: "
            f"{shown(missing[0])})"
        )
    if unexpected:
        said.append(
            f"{len(unexpected)} of the file's {len(state)} keys are not the model's "
            f"(first: {shown(unexpected[0])})"
        )
    if reshaped:
        k = reshaped[0]
        said.append(
            f"{shown(k)} is {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
        )
    hint = ""
    if map_keys is None and missing and _fits_in_order(state, own):
        hint = (
            "; its tensors fit the model's one by one in order (the same network saved under "
            "other names): pass --weights-in-order (in Python: map_keys=camkit.models.in_order)"
        )
    raise ModelError(f"{shown(source)} does not fit {target}: {'; '.join(said)}{hint}")


def _fits_in_order(state: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> bool:
    return len(state) == len(own) and all(
        a.shape == b.shape for a, b in zip(state.values(), own.values(), strict=True)
    )


def in_order(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """A key mapping hook for a checkpoint of the same network saved under other names (a
    port from another implementation): the file's tensors, in the order they are stored, take
    the model's names in its order. Refused with a `ValueError` unless both have as many
    tensors and every pair has the same shape, so that a different network never loads.

    Examples:
        >>> from torch import nn
        >>> in_order({"a": torch.ones(2, 3), "b": torch.ones(2)}, nn.Linear(3, 2))["bias"]
        tensor([1., 1.])
    """
    own = model.state_dict()
    if len(state) != len(own):
        raise ValueError(f"in order: the file has {len(state)} tensors, the model {len(own)}")
    for (theirs, value), (name, wanted) in zip(state.items(), own.items(), strict=True):
        if value.shape != wanted.shape:
            raise ValueError(
                f"in order: the file's {theirs!r} is {tuple(value.shape)} where the model's "
                f"{name!r} is {tuple(wanted.shape)}"
            )
    return dict(zip(own, state.values(), strict=True))
