"""Test-time augmentation: explain flipped and rescaled views, map each back, average."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from camkit.explanation import Explanation
from camkit.maps import normalise, upsample
from camkit.methods.base import Explainer
from camkit.targets import Score, Targets


class Augmented:
    """Wrap an explainer: average its maps over flipped and rescaled views of each input.

    Each view is explained with the same targets (those of the original view), its maps are
    brought back to the original frame (flipped back, resized), and the views' maps are averaged
    and renormalised. ``Augmented(e, flip=False, scales=(1.0,))`` is `e` itself.

    Examples:
        >>> import torch, camkit
        >>> net = camkit.models.example_net()
        >>> smooth = camkit.Augmented(camkit.GradCAM(net), flip=True, scales=(1.0, 1.5))
        >>> smooth(torch.rand(2, 3, 16, 16)).maps.shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self, explainer: Explainer, *, flip: bool = True, scales: Sequence[float] = (1.0,)
    ) -> None:
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        self.explainer = explainer
        self.views = [(s, f) for s in scales for f in ((False, True) if flip else (False,))]

    def __call__(
        self, x: Tensor, targets: Targets = None, *, score: Score = "logit"
    ) -> Explanation:
        """Explain `x` like the wrapped explainer, averaged over the views."""
        original = self.explainer(x, targets, score=score)
        fixed = original.targets if original.targets is not None else targets
        maps, raws = [], []
        for scale, flipped in self.views:
            if scale == 1.0 and not flipped:
                result = original
            else:
                view = x.flip(-1) if flipped else x
                if scale != 1.0:
                    size = [max(1, round(s * scale)) for s in x.shape[2:]]
                    view = F.interpolate(view, size=size, mode=_mode(x), align_corners=False)
                result = self.explainer(view, fixed, score=score)
            maps.append(_back(result.maps, x.shape[2:], flipped))
            raws.append(
                [
                    _back(r, o.shape[2:], flipped)
                    for r, o in zip(result.raw, original.raw, strict=True)
                ]
            )
        raw = tuple(torch.stack(layer).mean(dim=0) for layer in zip(*raws, strict=True))
        return Explanation(
            maps=normalise(torch.stack(maps).mean(dim=0)),
            raw=raw,
            targets=original.targets,
            scores=original.scores,
            outputs=original.outputs,
            layers=original.layers,
            method=f"{original.method}+tta",
        )


def _mode(x: Tensor) -> str:
    return {3: "linear", 4: "bilinear", 5: "trilinear"}[x.dim()]


def _back(maps: Tensor, size: Sequence[int], flipped: bool) -> Tensor:
    """A view's (B, K, *spatial) maps in the original frame."""
    maps = maps.flip(-1) if flipped else maps
    return upsample(maps, size) if tuple(maps.shape[2:]) != tuple(size) else maps
