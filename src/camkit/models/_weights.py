"""The bundled models' shipped weights, loaded one way (no download: they are package data)."""

from __future__ import annotations

from importlib import resources
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def load_shipped(model: M, file: str) -> M:
    """`model` with the weights of the package file `file` (stored in half precision where
    that loses nothing that matters; loaded as float32), in eval mode."""
    path = resources.files("camkit.models").joinpath(file)
    with resources.as_file(path) as local:
        state = torch.load(local, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()
