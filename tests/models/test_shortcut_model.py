"""The shortcut model's evidence is the tag, by construction, and Score-CAM finds it."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit import metrics
from camkit.data import ShortcutShapes
from camkit.models.shortcut import evidence_check, load_shortcut_model


@pytest.fixture(scope="module")
def conflict() -> dict[str, torch.Tensor]:
    return ShortcutShapes(120, split="conflict", seed=4000).stack()


def test_removing_the_tag_changes_the_prediction_removing_the_shape_does_not(conflict) -> None:
    check = evidence_check(load_shortcut_model(), conflict)
    assert check["follows_tag"] > 0.97
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
