"""Smoothing by noisy copies of the input (SmoothGrad), in one batch; test-time augmentation
(flips and scales) is `camkit.augment.Augmented`."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from camkit import seeds
from camkit.errors import whole_number


@dataclasses.dataclass(frozen=True)
class Noise:
    """`copies` noisy copies of every input, noise std `sigma` times the input's value range.

    Pass it as ``smooth=`` to any method to average its maps over the copies (SmoothGrad,
    Smilkov et al. 2017); Smooth Grad-CAM++ uses it for its averaged derivatives. All copies
    of all inputs go through the model as one batch. ``Noise(1, 0.0)`` is the plain method.

    Examples:
        >>> import torch
        >>> Noise(copies=3, sigma=0.1, seed=0).expand(torch.zeros(2, 1, 4)).shape
        torch.Size([6, 1, 4])
    """

    copies: int = 8
    sigma: float = 0.15
    seed: int | None = None

    def __post_init__(self) -> None:
        whole_number("copies", self.copies, 1024, "noisy copies, each a pass of every input")
        if self.sigma < 0:
            raise ValueError(f"sigma must be at least 0, got {self.sigma}")

    def expand(self, x: Tensor) -> Tensor:
        """(B, ...) -> (copies * B, ...), copy-major: rows c * B .. (c + 1) * B are copy c."""
        dims = tuple(range(1, x.dim()))
        spread = (x.amax(dim=dims, keepdim=True) - x.amin(dim=dims, keepdim=True)).detach()
        generator = None
        if self.seed is not None:
            generator = seeds.generator(self.seed, x.device)
        noise = torch.randn(
            (self.copies, *x.shape), generator=generator, device=x.device, dtype=x.dtype
        )
        return (x.detach().unsqueeze(0) + noise * (self.sigma * spread)).flatten(0, 1)
