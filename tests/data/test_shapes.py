from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from camkit.data import CLASSES, ShapesDataset, render, shape_coverage


def test_samples_are_a_pure_function_of_seed_and_index() -> None:
    a, b = ShapesDataset(5, seed=3), ShapesDataset(5, seed=3)
    for i in range(5):
        assert torch.equal(a[i]["image"], b[i]["image"])
        assert torch.equal(a[i]["mask"], b[i]["mask"])
    assert not torch.equal(a[0]["image"], ShapesDataset(5, seed=4)[0]["image"])


def test_single_object_sample_fields() -> None:
    data = ShapesDataset(60, seed=11)
    batch = data.stack()
    assert batch["image"].shape == (60, 3, 96, 96)
    assert batch["image"].dtype == torch.float32
    assert float(batch["image"].amin()) >= 0
    assert float(batch["image"].amax()) <= 1
    assert batch["label"].shape == (60,)
    assert set(batch["label"].tolist()) == set(range(6))
    assert batch["mask"].shape == (60, 96, 96)
    assert batch["mask"].dtype == torch.bool
    area = batch["mask"].flatten(1).float().mean(1)
    assert float(area.amin()) > 0.015
    assert float(area.amax()) < 0.3
    for mask, box in zip(batch["mask"], batch["box"], strict=True):  # boxes are tight
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def test_objects_stand_out_from_their_surroundings() -> None:
    batch = ShapesDataset(40, seed=12).stack()
    contrasts = []
    for image, mask in zip(batch["image"], batch["mask"], strict=True):
        near = torch.nn.functional.max_pool2d(mask[None, None].float(), 9, 1, 4)[0, 0].bool()
        rim = near & ~mask
        contrasts.append(float((image[:, mask].mean(1) - image[:, rim].mean(1)).abs().mean()))
    assert sum(c > 0.1 for c in contrasts) >= 36  # 90% clearly visible


def test_two_object_split() -> None:
    data = ShapesDataset(20, objects=2, seed=5, size=(80, 112))
    for i in range(20):
        sample = data[i]
        assert sample["image"].shape == (3, 80, 112)
        assert sample["label"].shape == (2,)
        assert sample["label"][0] != sample["label"][1]
        assert sample["mask"].shape == (2, 80, 112)
        assert not bool((sample["mask"][0] & sample["mask"][1]).any())
        assert sample["box"].shape == (2, 4)


def test_coverage_is_anti_aliased_area() -> None:
    cover = shape_coverage(0, (64, 64), (32.3, 32.0), 20.0, 0.0)
    assert abs(float(cover.sum()) - math.pi * 400) / (math.pi * 400) < 0.01
    assert 0 < float(cover[32, 12]) < 1  # an edge pixel is partly covered (edge at x = 12.3)
    ring = shape_coverage(CLASSES.index("ring"), (64, 64), (32.0, 32.0), 20.0, 0.0)
    assert float(ring[32, 32]) == 0.0  # a ring has a hole
    square = shape_coverage(CLASSES.index("square"), (64, 64), (32.3, 32.7), 20.0, 0.0)
    assert abs(float(square.sum()) - 2 * 400) / 800 < 0.02  # side sqrt(2) r, 2x supersampled


def test_dataloader_and_errors() -> None:
    batch = next(iter(DataLoader(ShapesDataset(8, size=32), batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["label"].shape == (4,)
    with pytest.raises(ValueError, match="objects must be 1 or 2"):
        ShapesDataset(3, objects=3)
    with pytest.raises(IndexError):
        ShapesDataset(3)[3]
    with pytest.raises(ValueError, match="cannot place 2 shapes"):
        render([0, 1], (6, 6), torch.Generator().manual_seed(0))
