"""The shortcut models' evidence is the tag, by construction (the CNN's and the ViT's), and
Score-CAM finds it on the CNN."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit import metrics
from camkit.data import ShortcutShapes
from camkit.models import load_model
from camkit.models.shortcut import evidence_check, load_shortcut_model, load_shortcut_vit


@pytest.fixture(scope="module")
def conflict() -> dict[str, torch.Tensor]:
    return ShortcutShapes(120, split="conflict", seed=4000).stack()


@pytest.mark.parametrize("load", [load_shortcut_model, load_shortcut_vit])
def test_removing_the_tag_changes_the_prediction_removing_the_shape_does_not(
    conflict, load
) -> None:
    check = evidence_check(load(), conflict)
    print(f"{load.__name__} on 120 conflict images: {check}")
    assert check["follows_tag"] > 0.95
    assert check["follows_shape"] < 0.03
    assert check["tag_removed_changes"] > 0.6  # the rest guess the tag's class by chance (1/6)
    assert check["shape_removed_changes"] < 0.03


@pytest.mark.slow
def test_score_cam_points_at_the_tag_more_often_than_grad_cam(conflict) -> None:
    model = load_shortcut_model()
    x, tags = conflict["image"][:60], conflict["tag_mask"][:60]
    tolerance = 15 * 96 / 224
    hits = {
        method: metrics.pointing_game(camkit.explain(model, x, method), tags, tolerance=tolerance)
        for method in ("gradcam", "scorecam")
    }
    assert hits["scorecam"].accuracy > 0.85
    assert hits["scorecam"].accuracy > hits["gradcam"].accuracy + 0.1


def test_the_shortcut_vit_is_the_bundled_vits_architecture_under_2_mib() -> None:
    from importlib import resources

    loaded = load_model("vit-shortcut")
    assert type(loaded.model) is camkit.models.ShapesViT
    assert not loaded.model.training
    shipped = resources.files("camkit.models").joinpath("shortcut_vit.pt")
    assert shipped.stat().st_size < 2 * 2**20  # type: ignore[attr-defined]
    with pytest.raises(camkit.errors.ModelError, match="shipped weights only"):
        load_model("vit-shortcut", "weights.pt")
