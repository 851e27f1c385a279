"""The bundled shortcut models: `ShapesNet` and `ShapesViT` trained where only a small tag
predicts the class."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camkit.models._weights import load_shipped
from camkit.models.shapes import ShapesNet
from camkit.models.vit import ShapesViT

WEIGHTS_FILE = "shortcut_net.pt"
VIT_WEIGHTS_FILE = "shortcut_vit.pt"


def load_shortcut_model() -> ShapesNet:
    """The shortcut classifier in eval mode, with its shipped weights (no download).

    Trained on `camkit.data.ShortcutShapes` (``scripts/train_shortcut.py``): it names the
    class of the tag's colour, whatever the shape. Its evidence is the tag, by construction.

    Examples:
        >>> from camkit.data import ShortcutShapes
        >>> model = load_shortcut_model()
        >>> data = ShortcutShapes(8, split="conflict", seed=4000).stack()
        >>> bool((model(data["image"]).argmax(1) == data["label"]).float().mean() > 0.8)
        True
    """
    return load_shipped(ShapesNet(), WEIGHTS_FILE)


def load_shortcut_vit() -> ShapesViT:
    """The shortcut vision transformer in eval mode, with its shipped weights (no download).

    The bundled ViT's architecture trained on `camkit.data.ShortcutShapes`
    (``scripts/train_vit_shortcut.py``, which also says why a plain training of it stays at
    chance): it names the class of the tag's colour, whatever the shape.

    Examples:
        >>> from camkit.data import ShortcutShapes
        >>> model = load_shortcut_vit()
        >>> data = ShortcutShapes(8, split="conflict", seed=4000).stack()
        >>> bool((model(data["image"]).argmax(1) == data["label"]).float().mean() > 0.8)
        True
    """
    return load_shipped(ShapesViT(), VIT_WEIGHTS_FILE)


def evidence_check(model: nn.Module, data: dict[str, Tensor]) -> dict[str, float]:
    """Where a model's evidence is, on a stacked `ShortcutShapes` conflict split: the share of
    images where it follows the tag or the shape, and where removing the tag or the shape
    changes its prediction."""
    with torch.inference_mode():

        def predict(images: Tensor) -> Tensor:
            return torch.cat([model(chunk).argmax(1) for chunk in images.split(256)])

        original = predict(data["image"])
        without_tag, without_shape = predict(data["without_tag"]), predict(data["without_shape"])
    return {
        "follows_tag": float((original == data["label"]).float().mean()),
        "follows_shape": float((original == data["shape"]).float().mean()),
        "tag_removed_changes": float((without_tag != original).float().mean()),
        "shape_removed_changes": float((without_shape != original).float().mean()),
    }
