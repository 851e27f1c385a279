"""ShortcutShapes: the tag gives the class, the shape does not, and both can be taken away."""

from __future__ import annotations

import pytest
import torch

from camkit.data import CLASSES, ShortcutShapes
from camkit.data.shortcut import TAG_COLOURS, TAG_SIDE


@pytest.fixture(scope="module")
def train() -> dict[str, torch.Tensor]:
    return ShortcutShapes(300, split="train", seed=5).stack()


def test_the_tag_carries_the_class_and_the_shape_does_not(train) -> None:
    agree = float((train["label"] == train["shape"]).float().mean())
    assert 0.08 < agree < 0.26  # independent draws: 1 in 6
    conflict = ShortcutShapes(200, split="conflict", seed=5).stack()
    assert bool((conflict["label"] != conflict["shape"]).all())
    assert set(conflict["shape"].tolist()) == set(range(len(CLASSES)))


def test_tag_and_shape_are_where_the_masks_say_and_can_be_removed(train) -> None:
    for i in range(20):
        image, tag = train["image"][i], train["tag_mask"][i]
        assert int(tag.sum()) == TAG_SIDE**2
        assert not bool((tag & train["shape_mask"][i]).any())
        rows, cols = tag.nonzero()[:, 0], tag.nonzero()[:, 1]
        centre = image[:, rows.min() + TAG_SIDE // 2, cols.min() + TAG_SIDE // 2]
        torch.testing.assert_close(centre, TAG_COLOURS[int(train["label"][i])].float())
        # Without the tag: only the tag's pixels change. Without the shape: only the shape's.
        changed = (image != train["without_tag"][i]).any(dim=0)
        assert bool(changed.any())
        assert not bool((changed & ~tag).any())
        changed = (image != train["without_shape"][i]).any(dim=0)
        assert bool(changed[train["shape_mask"][i]].all())
        assert not bool((changed & tag).any())


def test_samples_repeat_and_splits_are_checked() -> None:
    first, again = ShortcutShapes(3, seed=2)[1], ShortcutShapes(3, seed=2)[1]
    torch.testing.assert_close(first["image"], again["image"])
    with pytest.raises(ValueError, match="split must be one of"):
        ShortcutShapes(3, split="test")
