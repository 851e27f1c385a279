"""The deeper bundled model: accurate on its harder split, and its maps tell methods apart."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit.data import HardShapes
from camkit.models.deep import EXPLAINED_LAYER, load_deep_model


@pytest.fixture(scope="module")
def held_out() -> dict[str, torch.Tensor]:
    return HardShapes(100, seed=6000).stack()


def test_the_shipped_weights_classify_the_harder_split(held_out) -> None:
    model = load_deep_model()
    with torch.inference_mode():
        predicted = model(held_out["image"]).argmax(1)
    assert float((predicted == held_out["label"]).float().mean()) > 0.85


def test_methods_that_coincide_on_a_linear_head_differ_here(held_out) -> None:
    model, x = load_deep_model(), held_out["image"][:8]
    maps = {
        m: camkit.explain(model, x, m, layer=EXPLAINED_LAYER).maps
        for m in ("gradcam", "hirescam", "xgradcam", "layercam", "gradcam-elementwise")
    }
    names = list(maps)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert (maps[a] - maps[b]).abs().max() > 0.05, (a, b)
    with pytest.raises(ValueError, match="CAM"):
        camkit.CAM(model, layer=EXPLAINED_LAYER)(x)
