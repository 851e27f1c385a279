"""HardShapes: several small instances of one class among clutter of their own colour."""

from __future__ import annotations

import torch

from camkit.data import HardShapes, ShapesDataset


def test_instances_are_small_and_masked() -> None:
    data = HardShapes(60, seed=3).stack()
    share = data["mask"].float().mean(dim=(1, 2))
    easy = ShapesDataset(60, seed=3).stack()["mask"].float().mean(dim=(1, 2))
    assert bool((share > 0).all())
    assert float(share.mean()) < float(easy.mean())
    assert set(data["label"].tolist()) == set(range(6))
    torch.testing.assert_close(HardShapes(2, seed=3)[1]["image"], data["image"][1])
