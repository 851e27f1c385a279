"""A model's input as camkit sees it: one tensor, a tuple of tensors, or keyword tensors.

`Inputs` passes them to the model as they are (``model(x)``, ``model(*x)`` or ``model(**x)``)
and knows which one the maps are drawn on (the *spatial* input: masked by Score-CAM, made
noisy by smoothing, the size the maps are upsampled to). The batch size is the first tensor's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

ModelInput = Tensor | Sequence[Tensor] | Mapping[str, Tensor]
SpatialInput = int | str | None


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The model's inputs and which of them is spatial.

    Examples:
        >>> import torch
        >>> inputs = Inputs.wrap({"mask": torch.ones(2, 5), "image": torch.zeros(2, 3, 8, 8)})
        >>> inputs.key, inputs.batch, tuple(inputs.spatial.shape)
        ('image', 2, (2, 3, 8, 8))
    """

    values: tuple[Any, ...] | dict[str, Any]
    key: int | str
    single: bool = False  # a plain tensor: model(x)

    @classmethod
    def wrap(cls, x: object, spatial: SpatialInput = None) -> Inputs:
        """Check the form of `x` and find its spatial input (`spatial`, or the first tensor with
        at least one spatial dimension)."""
        if isinstance(x, Tensor):
            if spatial not in (None, 0):
                raise ValueError(f"spatial_input={spatial!r} names an input, but x is one tensor")
            return cls((x,), 0, single=True)
        if isinstance(x, Mapping):
            values: tuple[Any, ...] | dict[str, Any] = dict(x)
            keys: list[int | str] = list(values)
        elif isinstance(x, (tuple, list)):
            values = tuple(x)
            keys = list(range(len(values)))
        else:
            raise TypeError(
                f"expected a float tensor (B, C, *spatial), a tuple of tensors or a dict of "
                f"keyword tensors, got {type(x).__name__}"
            )
        tensors = [k for k in keys if isinstance(values[k], Tensor)]  # type: ignore[index]  # a mapping here
        if not tensors:
            raise TypeError(
                f"expected a float tensor (B, C, *spatial), or a tuple or dict of inputs with "
                f"the image among them as a tensor; got a {type(x).__name__} with no tensor"
            )
        if spatial is None:
            spatial = next((k for k in tensors if values[k].dim() >= 3), tensors[0])  # type: ignore[index]  # a mapping
        if spatial not in tensors:
            raise ValueError(
                f"spatial_input={spatial!r} is not one of the tensor inputs: {tensors}"
            )
        return cls(values, spatial)

    @property
    def spatial(self) -> Tensor:
        """The input the maps are drawn on."""
        value: Tensor = self.values[self.key]  # type: ignore[index]  # a mapping when keyed
        return value

    @property
    def batch(self) -> int:
        """The number of inputs in the batch."""
        first = next(v for v in self._items() if isinstance(v[1], Tensor))[1]
        return int(first.shape[0]) if first.dim() else 0

    def _items(self) -> list[tuple[int | str, Any]]:
        if isinstance(self.values, dict):
            return list(self.values.items())
        return list(enumerate(self.values))

    def map(self, change: Callable[[Tensor], Tensor], spatial: Tensor | None = None) -> Inputs:
        """`change` applied to every batched tensor; the spatial input replaced by `spatial`."""
        batch = self.batch
        changed = {
            k: spatial
            if k == self.key and spatial is not None
            else (change(v) if isinstance(v, Tensor) and v.dim() and v.shape[0] == batch else v)
            for k, v in self._items()
        }
        if isinstance(self.values, dict):
            return Inputs(changed, self.key, self.single)  # type: ignore[arg-type]  # same kind
        return Inputs(tuple(changed.values()), self.key, self.single)

    @property
    def given(self) -> Any:
        """The inputs in the form they were given: a tensor, a tuple or a dict of tensors."""
        return self.values[0] if self.single else self.values  # type: ignore[index]  # a tuple

    def take(self, rows: Tensor, spatial: Tensor | None = None) -> Inputs:
        """The rows `rows` of every batched input (the spatial one replaced by `spatial`)."""
        return self.map(lambda t: t[rows.to(t.device)], spatial)

    def repeat(self, copies: int, spatial: Tensor) -> Inputs:
        """`copies` copies of every batched input, copy-major, with `spatial` (already
        (copies * B, ...)) as the spatial input."""
        return self.map(lambda t: t.repeat(copies, *[1] * (t.dim() - 1)), spatial)

    def __call__(self, model: Callable[..., Any]) -> Any:
        """The model's output for these inputs."""
        if self.single:
            return model(self.values[0])  # type: ignore[index]  # a sequence here
        if isinstance(self.values, dict):
            return model(**self.values)
        return model(*self.values)
