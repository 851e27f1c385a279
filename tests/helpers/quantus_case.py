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
    scores = metric(model=c["model"], x_batch=c["x"].numpy(), y_batch=c["labels"].numpy(),
                    a_batch=c["maps"][:, None].numpy().astype(np.float64), **more)  # fmt: skip
    return torch.tensor(np.asarray(scores, dtype=np.float64))


def compared(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest difference, printed (the tests show it, pass or fail)."""
    difference = float((ours.double() - theirs).abs().max())
    print(f"{name}: camkit against Quantus, largest difference {difference:.3g} "
          f"over {len(ours)} images")  # fmt: skip
    return difference
