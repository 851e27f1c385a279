"""The bundled vision transformer: a small ViT trained on the shapes data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from camkit.data.shapes import CLASSES
from camkit.models._weights import load_shipped

WEIGHTS_FILE = "shapes_vit.pt"
GRID = 12  # the position embeddings' grid: 96 px images in 8 px patches


class Attention(nn.Module):
    """Multi-head self-attention through PyTorch's fused kernel (no probabilities are kept:
    camkit's attention methods compute them when they need them)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    @override
    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v)
        out: Tensor = self.proj(mixed.transpose(1, 2).reshape(batch, tokens, dim))
        return out


class Block(nn.Module):
    """A pre-norm transformer block: attention, then an MLP, each on a residual branch."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    @override
    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


class ShapesViT(nn.Module):
    """A small vision transformer for `camkit.data` shapes: 8 px tokens from a convolutional
    stem, a class token, four blocks of width 64 with four heads, classified from the class
    token. Takes RGB images in
    [0, 1] of any size (normalisation is part of the model; the position embeddings are
    resized to the patch grid). About 0.21 M parameters.

    Examples:
        >>> import torch
        >>> ShapesViT()(torch.rand(2, 3, 96, 96)).shape
        torch.Size([2, 6])
    """

    classes: tuple[str, ...] = CLASSES
    mean: Tensor
    std: Tensor

    def __init__(self, dim: int = 64, depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        # A convolutional stem (three stride-2 3x3 convolutions) in place of one 8x8 patch
        # projection: the same 8 px tokens, and a ViT this small learns from 16k images.
        self.patch_embed = nn.Sequential(
            nn.Conv2d(3, dim // 4, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(dim // 4, dim // 2, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1),
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + GRID * GRID, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, 3 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, len(CLASSES))
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    def _positions(self, grid: tuple[int, int]) -> Tensor:
        if grid == (GRID, GRID):
            return self.pos_embed
        cls, patches = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        square = patches.transpose(1, 2).unflatten(2, (GRID, GRID))
        resized = F.interpolate(square, size=grid, mode="bilinear", align_corners=False)
        return torch.cat([cls, resized.flatten(2).transpose(1, 2)], dim=1)

    @override
    def forward(self, x: Tensor) -> Tensor:
        patches = self.patch_embed((x - self.mean) / self.std)
        grid = (patches.shape[2], patches.shape[3])
        tokens = patches.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = self.blocks(tokens + self._positions(grid))
        logits: Tensor = self.head(self.norm(tokens)[:, 0])
        return logits


def load_vit_model(pretrained: bool = True) -> ShapesViT:
    """The bundled ViT in eval mode, with its shipped weights (no download); trained on
    `camkit.data.ShapesDataset` by ``scripts/train_vit.py``.

    Examples:
        >>> from camkit.data import ShapesDataset
        >>> model = load_vit_model()
        >>> data = ShapesDataset(16, seed=2000).stack()
        >>> bool((model(data["image"]).argmax(1) == data["label"]).float().mean() > 0.7)
        True
    """
    return load_shipped(ShapesViT(), WEIGHTS_FILE) if pretrained else ShapesViT().eval()
