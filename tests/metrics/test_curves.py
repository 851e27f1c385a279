"""Deletion and insertion: exact curves and areas on a 2x2 image scored by hand."""

from __future__ import annotations

import math

import pytest
import torch

import camkit
from camkit.metrics import Curve, auc, blur, deletion, insertion
from helpers.pixel_model import PixelScore

WEIGHTS = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
MAP = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])  # relevance order: pixel 1, 2, 3, 0


def test_deletion_by_hand() -> None:
    model = PixelScore(WEIGHTS)
    curve = deletion(model, torch.ones(1, 1, 2, 2), MAP, 0, steps=2, score="logit")
    # step 1 deletes pixels 1 and 2 (weights 2 and 3): 10 -> 5; step 2 deletes the rest
    assert curve.scores.tolist() == [[10.0, 5.0, 0.0]]
    assert curve.fractions.tolist() == [0.0, 0.5, 1.0]
    assert curve.auc.tolist() == [5.0]  # 0.5 * (10 + 5) / 2 + 0.5 * (5 + 0) / 2


def test_insertion_by_hand() -> None:
    model = PixelScore(WEIGHTS)
    start = torch.zeros(1, 1, 2, 2)
    curve = insertion(model, torch.ones(1, 1, 2, 2), MAP, 0, steps=4, start=start, score="logit")
    assert curve.scores.tolist() == [[0.0, 2.0, 5.0, 9.0, 10.0]]  # pixels 1, 2, 3, then 0
    assert curve.auc.item() == pytest.approx((0 + 2 * 2 + 2 * 5 + 2 * 9 + 10) / 2 / 4)


def test_uneven_steps_fill_and_ties() -> None:
    model = PixelScore(WEIGHTS)
    flat = torch.ones(1, 2, 2)  # all tied: with seed=None pixels are taken in raster order
    curve = deletion(
        model, torch.ones(1, 1, 2, 2), flat, 0, steps=3, fill=0.5, score="logit", seed=None
    )
    assert curve.fractions.tolist() == [0.0, 0.25, 0.5, 1.0]  # 4 * i // 3 pixels: 0, 1, 2, 4
    assert curve.scores.tolist() == [[10.0, 9.5, 8.5, 5.0]]


def test_ties_are_broken_at_random_but_repeatably() -> None:
    from camkit.metrics._common import relevance_ranks

    maps = torch.zeros(2, 16, 16)
    maps[1, 0, 0] = 1.0  # one distinct pixel: always first
    ranks = relevance_ranks(maps, seed=0)
    assert torch.equal(ranks, relevance_ranks(maps, seed=0))
    assert not torch.equal(ranks, relevance_ranks(maps, seed=1))
    assert ranks[1, 0].item() == 0
    first_half = (ranks[0] < 128).view(16, 16)
    assert 40 < int(first_half[:8].sum()) < 88  # not the top eight rows (128 of them)
    assert sorted(ranks[0].tolist()) == list(range(256))
    raster = relevance_ranks(maps, seed=None)
    assert raster[0].tolist() == list(range(256))


def test_fill_per_channel() -> None:
    model = PixelScore(torch.ones(2, 2, 2))
    x = torch.zeros(1, 2, 2, 2)
    curve = deletion(model, x, MAP, 0, steps=1, fill=torch.tensor([1.0, 2.0]), score="logit")
    assert curve.scores.tolist() == [[0.0, 12.0]]  # 4 pixels * (1 + 2)


def test_auc_by_hand() -> None:
    assert auc(torch.tensor([[1.0, 0.0, 0.0]])).tolist() == [0.25]
    uneven = auc(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 0.5, 1.0]))
    assert uneven.item() == pytest.approx(0.75)
    assert Curve(torch.tensor([[1.0, 1.0]]), torch.tensor([0.0, 1.0])).mean_auc == 1.0


def test_blur_is_the_normalised_gaussian() -> None:
    delta = torch.zeros(1, 1, 21, 21)
    delta[0, 0, 10, 10] = 1.0
    blurred = blur(delta, kernel=11, sigma=5.0)
    weights = [math.exp(-(d**2) / 50) for d in range(-5, 6)]
    total = sum(weights)
    assert blurred[0, 0, 10, 10].item() == pytest.approx((1 / total) ** 2)
    assert blurred[0, 0, 10, 13].item() == pytest.approx(weights[8] / total**2)
    assert blurred.sum().item() == pytest.approx(1.0)


def test_every_step_is_one_batched_row_and_the_known_end_is_reused() -> None:
    model = PixelScore(WEIGHTS)
    x = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    base = torch.softmax(model(x), dim=1)
    model.rows = 0
    deletion(model, x, MAP.expand(3, 2, 2), 0, steps=4, base=base)
    assert model.rows == 3 * 4  # step 0 is the clean input, not scored again
    model.rows = 0
    insertion(model, x, MAP.expand(3, 2, 2), 0, steps=4, base=base)
    assert model.rows == 3 * 4


def test_chunking_does_not_change_the_curves(tiny, images) -> None:
    explanation = camkit.GradCAM(tiny)(images)
    whole = deletion(tiny, images, explanation, steps=6, rows_per_pass=256)
    chunked = deletion(tiny, images, explanation, steps=6, rows_per_pass=4)
    assert torch.allclose(whole.scores, chunked.scores, atol=1e-6)
    inserted = insertion(tiny, images, explanation, steps=6, rows_per_pass=5)
    with torch.no_grad():
        probabilities = tiny(images).softmax(dim=1)
    targets = explanation.targets[:, 0]
    assert torch.allclose(inserted.scores[:, -1], probabilities[torch.arange(3), targets])
    assert torch.allclose(whole.scores[:, 0], probabilities[torch.arange(3), targets])


def test_bad_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="steps must be at least 1"):
        deletion(PixelScore(WEIGHTS), torch.ones(1, 1, 2, 2), MAP, steps=0)


def test_cpu_passes_in_channels_last_and_small_chunks_give_the_same_scores() -> None:
    # ModelScores runs a CPU model on channels-last chunks of CPU_VALUES input values; the
    # scores equal one plain pass within float32 rounding, and a model that views a conv's
    # output (which refuses channels-last) gets its inputs as they were.
    from camkit.metrics._common import ModelScores

    class Viewing(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4 * 30 * 30, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.conv(x)
            return self.fc(a.view(a.shape[0], -1))

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(900, 3, 32, 32, generator=generator)  # 3 chunks of 2e6 values
    for net in (camkit.models.example_net(classes=5).eval(), Viewing().eval()):
        scores = ModelScores(net, score="logit")
        with torch.no_grad():
            plain = net(x)
        assert torch.allclose(scores(x), plain, atol=1e-5), net
    assert scores.channels_last is False  # the viewing model refused it, once


def test_deletion_is_quantus_pixel_flipping() -> None:
    # Quantus 0.6.0 flips single channel values in NumPy's order among ties; camkit deletes
    # pixels (every channel) with ties in a seeded random order. On a one-channel input, with
    # a map without ties, the fill at each image's minimum (Quantus' "black") and
    # features_in_step = pixels / steps, the two are one protocol: the same curve, but for
    # camkit's first point (the clean input).
    import quantus

    from helpers.quantus_case import compared, gray_case, quantus_gray

    c = gray_case()
    model, x, labels, maps = c["model"], c["x"], c["labels"], c["maps"]
    steps = 16
    ours = deletion(model, x, maps, labels, steps=steps, fill=x.amin(dim=(1, 2, 3), keepdim=True))
    metric = quantus.PixelFlipping(features_in_step=maps[0].numel() // steps, disable_warnings=True)
    curve = quantus_gray(metric)
    assert compared("PixelFlipping (deletion's curve)", ours.scores[:, 1:], curve) < 1e-6
