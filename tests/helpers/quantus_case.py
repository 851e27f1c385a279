"""One case both camkit and Quantus (0.6.0, a test dependency) measure: the bundled model,
16 images of its benchmark with their object masks, and Grad-CAM's maps of the labels."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import camkit
from camkit.data import ShapesDataset
from camkit.models import load_shapes_model


@functools.cache
def case() -> dict[str, Any]:
    model = load_shapes_model()
    data = ShapesDataset(16, seed=3).stack()
    x, labels, masks = data["image"], data["label"], data["mask"]
    maps = camkit.GradCAM(model)(x, labels).maps[:, 0]
    return {"model": model, "x": x, "labels": labels, "masks": masks, "maps": maps}


def quantus_scores(metric: Callable[..., Any], masks: bool = False) -> torch.Tensor:
    """A Quantus metric on the case: the maps as its attributions (B, 1, H, W), the masks as
    its segmentations."""
    c = case()
    more = {"s_batch": c["masks"][:, None].numpy().astype(np.float64)} if masks else {}
    scores = metric(
        model=c["model"],
        x_batch=c["x"].numpy(),
        y_batch=c["labels"].numpy(),
        a_batch=c["maps"][:, None].numpy().astype(np.float64),
        **more,
    )
    return torch.tensor(np.asarray(scores, dtype=np.float64))


def compared(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest difference, printed (the tests show it, pass or fail)."""
    difference = float((ours.double() - theirs).abs().max())
    print(
        f"{name}: camkit against Quantus, largest difference {difference:.3g} "
        f"over {len(ours)} images"
    )
    return difference


class Gray(torch.nn.Module):
    """The bundled model on grey images: one value a pixel, so Quantus' features (channel
    values) are camkit's (pixels)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.expand(-1, 3, -1, -1))


@functools.cache
def gray_case() -> dict[str, Any]:
    """The case on grey inputs, its maps without ties (Quantus orders ties its own way)."""
    c = case()
    jitter = torch.rand(c["maps"].shape, generator=torch.Generator().manual_seed(0))
    return {
        "model": Gray(c["model"]).eval(),
        "x": c["x"].mean(dim=1, keepdim=True),
        "labels": c["labels"],
        "maps": c["maps"] + 1e-4 * jitter,
    }


def quantus_gray(metric: Callable[..., Any], maps: torch.Tensor | None = None) -> torch.Tensor:
    """A Quantus metric on the grey case (its tie-free maps unless `maps` is given)."""
    c = gray_case()
    chosen = c["maps"] if maps is None else maps
    scores = metric(
        model=c["model"],
        x_batch=c["x"].numpy(),
        y_batch=c["labels"].numpy(),
        a_batch=chosen[:, None].double().numpy(),
    )
    return torch.tensor(np.asarray(scores, dtype=np.float64))
