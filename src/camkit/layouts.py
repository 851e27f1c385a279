"""How a layer's output lies on the input's grid: feature maps, tokens and channels-last.

A convolutional layer's output is already (B, C, *grid). A transformer's is (B, N, C): a few
leading tokens (class, distillation, registers) and then the patch tokens, row-major on a grid
with the input's shape; Swin's stages are channels-last (B, h, w, C). `Layout` turns each into
(B, C, *grid) for one model: it takes the number of leading tokens from the model where the
model says it (timm's ``num_prefix_tokens``, a Hugging Face config's register tokens) and puts
back the order of models that shuffle their tokens (Hiera's unrolled mask units).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

# When the model does not say how many tokens lead: none, a class token, class and
# distillation tokens, or a class token and four registers.
_GUESSED_LEADING = (0, 1, 2, 5)


def _plane(tokens: int, height: int, width: int) -> tuple[int, int] | None:
    """(h, w) with h * w == tokens and the input's aspect ratio (one stride for both axes)."""
    if tokens < 1:
        return None
    stride = math.sqrt(height * width / tokens)
    h, w = max(1, round(height / stride)), max(1, round(width / stride))
    return (h, w) if h * w == tokens else None


def _cube(tokens: int, depth: int, height: int, width: int) -> tuple[int, int, int] | None:
    """(d, h, w) with one stride for all three axes (a volume cut into cubes), or None."""
    stride = round((depth * height * width / tokens) ** (1 / 3)) if tokens > 0 else 0
    if stride < 1 or any(side % stride for side in (depth, height, width)):
        return None
    cube = (depth // stride, height // stride, width // stride)
    return cube if math.prod(cube) == tokens else None


def _depths(tokens: int, depth: int, height: int, width: int) -> list[int]:
    """Every depth d whose planes of tokens / d keep the input's aspect ratio, finest first."""
    return [
        d
        for d in range(min(depth, tokens), 0, -1)
        if tokens % d == 0 and depth % d == 0 and _plane(tokens // d, height, width)
    ]


def _volume(tokens: int, depth: int, height: int, width: int) -> tuple[int, int, int] | None:
    """(d, h, w) with d * h * w == tokens: one stride for all three axes (a volume cut into
    cubes), else the finest depth whose planes keep the input's aspect ratio (a video: time is
    strided apart from space)."""
    cube = _cube(tokens, depth, height, width)
    if cube is not None:
        return cube
    depths = _depths(tokens, depth, height, width)
    if not depths:
        return None
    plane = _plane(tokens // depths[0], height, width)
    assert plane is not None
    return (depths[0], *plane)


def patch_grid(tokens: int, input_spatial: Sequence[int]) -> tuple[int, ...] | None:
    """The grid `tokens` patch tokens of an input of shape `input_spatial` form, or None.

    Examples:
        >>> patch_grid(14 * 14, (224, 224)), patch_grid(8 * 7 * 7, (16, 224, 224))
        ((14, 14), (8, 7, 7))
    """
    if len(input_spatial) == 2:
        return _plane(tokens, *input_spatial)
    if len(input_spatial) == 3:
        return _volume(tokens, *input_spatial)
    return None


def token_grid(
    tokens: int, input_spatial: Sequence[int], leading: int | None = None
) -> tuple[int, tuple[int, ...]] | None:
    """How `tokens` tokens of a 2-D or 3-D input lie: (leading tokens, patch grid), or None.

    `leading` is what the model says (`leading_tokens`); None tries none, a class token, class
    and distillation tokens, and a class token with four registers, in that order.

    Examples:
        >>> token_grid(1 + 14 * 14, (224, 224))  # ViT-B/16: a class token, then 14 x 14
        (1, (14, 14))
        >>> token_grid(4 + 16 * 16, (256, 256), leading=4)  # four registers, no class token
        (4, (16, 16))
    """
    for count in _GUESSED_LEADING if leading is None else (leading,):
        grid = patch_grid(tokens - count, input_spatial)
        if grid is not None:
            return count, grid
    return None


def _is_grid(size: Sequence[int], height: int, width: int) -> bool:
    h, w = size
    if h < 1 or w < 1 or h > height or w > width:
        return False
    return abs(height / h - width / w) <= 0.15 * max(height / h, width / w)


def leading_tokens(model: nn.Module) -> int | None:
    """How many tokens come before the patch tokens, where the model says it: timm's
    ``num_prefix_tokens``, or a Hugging Face config's ``num_register_tokens`` (after the class
    token). None when it does not say.

    Examples:
        >>> import timm
        >>> leading_tokens(timm.create_model("vit_tiny_patch16_224", num_classes=2))
        1
    """
    for _, module in model.named_modules():  # the outermost that says
        count = getattr(module, "num_prefix_tokens", None)
        if isinstance(count, int) and not isinstance(count, bool):
            return count
        registers = getattr(getattr(module, "config", None), "num_register_tokens", None)
        if isinstance(registers, int) and not isinstance(registers, bool):
            return 1 + registers
    return None


Reroll = Callable[[str, Tensor], Tensor | None]


def _hiera_reroll(model: nn.Module) -> Reroll | None:
    """timm's Hiera keeps its tokens in "unrolled" order until the last stage; its own `reroll`
    module puts a block's tokens back on the grid. Returns a function (layer name, (B, N, C)
    tokens) -> (B, C, h, w), or None for other models."""
    found = next(
        (
            (name, module)
            for name, module in model.named_modules()
            if isinstance(getattr(module, "reroll", None), nn.Module)
            and isinstance(getattr(module.reroll, "schedule", None), dict)
        ),
        None,
    )
    if found is None:
        return None
    owner, module = found
    reroll: Any = module.reroll  # timm's Reroll: a schedule and forward(tokens, block)
    pattern = re.compile(rf"^{re.escape(owner + '.' if owner else '')}blocks\.(\d+)(\.|$)")

    def put_back(layer: str, tokens: Tensor) -> Tensor | None:
        matched = pattern.match(layer)
        if matched is None or tokens.dim() != 3:
            return None
        block = int(matched.group(1))
        for index in (block, block - 1):  # a block's output, or what its first layers see
            _, size = reroll.schedule.get(index, (None, None))
            if size is not None and math.prod(size) == tokens.shape[1]:
                grid: Tensor = reroll(tokens, index)  # (B, *grid, C)
                return grid.movedim(-1, 1)
        return None

    return put_back


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one model's layers lie on the input's grid.

    Attributes:
        leading: the leading tokens the model says it has (None: guessed from the count).
        reroll: puts back the token order of models that shuffle it (Hiera), by layer name.

    Examples:
        >>> import torch
        >>> Layout().spatial(torch.zeros(2, 1 + 4 * 4, 8), (32, 32)).shape
        torch.Size([2, 8, 4, 4])
    """

    leading: int | None = None
    reroll: Reroll | None = None

    @classmethod
    def of(cls, model: nn.Module) -> Layout:
        """The layout `model` describes (its leading tokens, its token order)."""
        return cls(leading_tokens(model), _hiera_reroll(model))

    def spatial(self, t: Tensor, input_spatial: Sequence[int], layer: str = "") -> Tensor | None:
        """(B, N, C) tokens or (B, h, w, C) channels-last as (B, C, *grid); None for other
        layouts (a (B, C, *grid) feature map among them: it needs nothing)."""
        if t.dim() == 3 and len(input_spatial) in (2, 3):
            if self.reroll is not None and (rerolled := self.reroll(layer, t)) is not None:
                return rerolled
            layout = token_grid(t.shape[1], input_spatial, self.leading)
            if layout is None:
                return None
            leading, grid = layout
            spatial: Tensor = t[:, leading:].transpose(1, 2).unflatten(2, grid)
            return spatial
        if (
            t.dim() == 4
            and len(input_spatial) == 2
            and _is_grid(t.shape[1:3], *input_spatial)
            and not _is_grid(t.shape[2:4], *input_spatial)
        ):
            return t.permute(0, 3, 1, 2)
        return None


def to_spatial(t: Tensor, input_spatial: Sequence[int]) -> Tensor | None:
    """(B, N, C) tokens or (B, h, w, C) channels-last as (B, C, *grid); None for other layouts.

    Tokens form a grid with the input's shape after up to two leading tokens (class,
    distillation), or a class token and four registers, which are dropped; `Layout.of(model)`
    reads the count from the model instead. 2-D inputs (and 3-D inputs, for tokens) only.

    Examples:
        >>> import torch
        >>> to_spatial(torch.zeros(2, 1 + 14 * 14, 768), (224, 224)).shape  # ViT-B/16
        torch.Size([2, 768, 14, 14])
        >>> to_spatial(torch.zeros(2, 7, 7, 768), (224, 224)).shape  # Swin stage output
        torch.Size([2, 768, 7, 7])
        >>> to_spatial(torch.zeros(2, 512, 7, 7), (224, 224)) is None  # already (B, C, h, w)
        True
    """
    return Layout().spatial(t, input_spatial)


def grid_ambiguous(tokens: int, input_spatial: Sequence[int]) -> bool:
    """Whether `tokens` patch tokens of a 3-D input fit more than one grid and none with one
    stride for all axes (a video's time and space strides cannot be told apart by the count).

    Examples:
        >>> grid_ambiguous(8 * 7 * 7, (16, 224, 224)), grid_ambiguous(4 * 4 * 4, (32, 32, 32))
        (True, False)
    """
    if len(input_spatial) != 3 or _cube(tokens, *input_spatial) is not None:
        return False
    return len(_depths(tokens, *input_spatial)) > 1
