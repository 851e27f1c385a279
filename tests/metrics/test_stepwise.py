"""Faithfulness by features in the map's order: worked by hand on a linear model, and against
Quantus 0.6.0 on the grey bundled case (one value a pixel, a map without ties)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import quantus
import torch

from camkit.metrics.stepwise import (
    faithfulness_estimate,
    irof,
    monotonicity,
    monotonicity_correlation,
    patch_ranks,
    region_perturbation,
    selectivity,
)
from helpers.pixel_model import PixelScore
from helpers.quantus_case import compared, gray_case, quantus_gray


def _linear_case() -> tuple[PixelScore, torch.Tensor, torch.Tensor, torch.Tensor]:
    """logit 0 = sum of w * x, logit 1 = 0: filling a pixel with 0 drops logit 0 by its w."""
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]) / 10
    x = torch.ones(1, 1, 2, 4)
    return PixelScore(w), x, w[None], torch.zeros(1, dtype=torch.long)


def test_faithfulness_estimate_by_hand() -> None:
    model, x, worth, target = _linear_case()
    # each pixel's drop is exactly its w: a map equal to w correlates 1, its negative -1
    assert faithfulness_estimate(model, x, worth, target).item() == pytest.approx(1.0)
    assert faithfulness_estimate(model, x, -worth, target).item() == pytest.approx(-1.0)
    # groups of 4 in the map's order: {8,7,6,5} and {4,3,2,1} tenths, drops 2.6 and 1.0
    assert faithfulness_estimate(model, x, worth, target, per_step=4).item() == pytest.approx(1.0)
    # a map that ranks the halves wrongly: sums (2.6 map on the small half) -> correlation -1
    swapped = torch.cat([worth[:, 1:], worth[:, :1]], dim=1)
    assert faithfulness_estimate(model, x, swapped, target, per_step=4).item() == pytest.approx(
        -1.0
    )
    with pytest.raises(ValueError, match="9 pixels a step: give 1 to 8"):
        faithfulness_estimate(model, x, worth, target, per_step=9)


def test_monotonicity_by_hand() -> None:
    model, x, worth, target = _linear_case()
    # softmax of (s, 0) rises with s: putting pixels back (all w > 0) only raises it
    assert monotonicity(model, x, worth, target).tolist() == [1.0]
    # a pixel with a negative worth makes the probability fall when it comes back (the third
    # in the map's order: the curve starts after the first group, as in Quantus)
    w = model.weights.clone()
    w[0, 2] = -1.0
    assert monotonicity(PixelScore(w), x, worth, target).tolist() == [0.0]
    # per_step 8: one step, nothing to compare: monotone
    assert monotonicity(PixelScore(w), x, worth, target, per_step=8).tolist() == [1.0]


def test_monotonicity_correlation_by_hand() -> None:
    model, x, worth, target = _linear_case()
    # each pixel given noise u: logit s - w (1 - u). Logits, no eps: the variance of the drop
    # is w^2 E[(1 - u)^2], increasing in w, so a map equal to w ranks them exactly
    noise = torch.rand(1, 8, 50, generator=torch.Generator().manual_seed(0))
    same = noise[:, :1].expand(1, 8, 50)  # every pixel the same draws: no sampling noise
    r = monotonicity_correlation(model, x, worth, target, noise=same, score="logit")
    assert r.tolist() == pytest.approx([1.0])
    r = monotonicity_correlation(model, x, -worth, target, noise=same, score="logit")
    assert r.tolist() == pytest.approx([-1.0])
    assert monotonicity_correlation(model, x, worth, target, noise=noise).shape == (1,)


def test_patches_are_ranked_by_their_map_sum() -> None:
    maps = torch.zeros(1, 4, 6)
    maps[0, 2:, 4:] = 1.0  # the bottom-right square of 2 x 2 carries everything
    maps[0, 0, 0] = 0.5
    ranks = patch_ranks(maps, patch=2).view(4, 6)
    assert ranks[2:, 4:].eq(0).all()
    assert ranks[:2, :2].eq(1).all()
    # squares that overhang the image (side 3 on 4 x 6): their part inside counts
    bottom = torch.zeros(1, 4, 6)
    bottom[0, 3, 3:] = 1.0
    assert patch_ranks(bottom, patch=3).view(4, 6)[3:, 3:].eq(0).all()
    with pytest.raises(ValueError, match="patch 0"):
        patch_ranks(maps, patch=0)


def test_region_perturbation_and_selectivity_by_hand() -> None:
    model, x, worth, target = _linear_case()
    logits = model(x)[0]
    clean = logits.softmax(0)[0]
    # squares of 2: {1,2,5,6} (sum 14) and {3,4,7,8} (sum 22): the right one goes first
    drops = region_perturbation(model, x, worth, target, patch=2)
    after_right = torch.tensor([1.4, 0.0]).softmax(0)[0]
    assert drops[0].tolist() == pytest.approx([clean - after_right, clean - 0.5])
    curve = selectivity(model, x, worth, target, patch=2)
    assert curve[0].tolist() == pytest.approx([clean, after_right, 0.5])
    assert region_perturbation(model, x, worth, target, patch=2, regions=1).shape == (1, 1)


def test_faithfulness_estimate_equals_quantus() -> None:
    c = gray_case()
    step = c["maps"][0].numel() // 32
    ours = faithfulness_estimate(c["model"], c["x"], c["maps"], c["labels"], per_step=step)
    metric = quantus.FaithfulnessEstimate(
        features_in_step=step, perturb_baseline=0.0, normalise=False, disable_warnings=True
    )
    assert compared("FaithfulnessEstimate", ours, quantus_gray(metric)) < 1e-5


def _putting_back(x: torch.Tensor):
    """The insertion Quantus' Monotonicity means: the input's own values at `indices`."""
    flat = x.flatten(1).double().numpy()

    def put_back(arr: np.ndarray, indices: np.ndarray, **_: object) -> np.ndarray:
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = flat[rows, indices]
        return out

    return put_back


def test_monotonicity_equals_quantus_with_the_insertion_it_means() -> None:
    # Quantus 0.6.0 "puts back" the baseline into a baseline input: nothing ever changes and
    # every map is monotone. With the input's values put back, as Arya et al. define it, the
    # two agree image by image.
    c = gray_case()
    step = c["maps"][0].numel() // 4
    ours = monotonicity(c["model"], c["x"], c["maps"], c["labels"], per_step=step)
    shipped = quantus.Monotonicity(
        features_in_step=step, perturb_baseline=0.0, normalise=False, disable_warnings=True
    )
    assert quantus_gray(shipped).tolist() == [1.0] * 16  # always "monotone": the bug
    assert quantus_gray(shipped, c["maps"].amax() - c["maps"]).tolist() == [1.0] * 16
    meant = quantus.Monotonicity(
        features_in_step=step,
        perturb_baseline=0.0,
        normalise=False,
        perturb_func=_putting_back(c["x"]),
        disable_warnings=True,
    )
    theirs = quantus_gray(meant)
    assert compared("Monotonicity (Arya), insertion as meant", ours, theirs) == 0
    assert 0 < float(ours.mean()) < 1  # the test can fail: some maps are monotone, some not


def test_monotonicity_correlation_equals_quantus_on_the_same_noise() -> None:
    c = gray_case()
    groups, samples = 16, 3
    step = c["maps"][0].numel() // groups
    noise = torch.rand(16, groups, samples, generator=torch.Generator().manual_seed(2))
    ours = monotonicity_correlation(
        c["model"], c["x"], c["maps"], c["labels"], per_step=step, noise=noise
    )
    # Quantus draws one uniform value per image per call, group by group, sample by sample
    replay = iter([noise[:, g, s].double().numpy() for g in range(groups) for s in range(samples)])
    metric = quantus.MonotonicityCorrelation(
        features_in_step=step, nr_samples=samples, normalise=False, disable_warnings=True
    )
    with mock.patch("numpy.random.uniform", side_effect=lambda *_, **__: next(replay)):
        theirs = quantus_gray(metric)
    assert compared("MonotonicityCorrelation (Nguyen)", ours, theirs) < 1e-6


def test_region_perturbation_and_selectivity_equal_quantus() -> None:
    c = gray_case()
    fill = c["x"].amin(dim=(1, 2, 3), keepdim=True)  # Quantus' "black": each image's minimum
    drops = region_perturbation(
        c["model"], c["x"], c["maps"], c["labels"], patch=8, regions=20, fill=fill
    )
    metric = quantus.RegionPerturbation(
        patch_size=8, regions_evaluation=20, normalise=False, disable_warnings=True
    )
    assert compared("RegionPerturbation", drops, quantus_gray(metric)) < 1e-6
    curve = selectivity(c["model"], c["x"], c["maps"], c["labels"], patch=16, fill=fill)
    metric = quantus.Selectivity(patch_size=16, normalise=False, disable_warnings=True)
    assert compared("Selectivity", curve[:, 1:], quantus_gray(metric)) < 1e-6


def test_superpixels_follow_the_image() -> None:
    from camkit.metrics.superpixels import superpixels

    x = torch.zeros(2, 3, 24, 24)
    x[0, :, :, 12:] = 1.0  # two halves
    x[1, :, 6:18, 6:18] = 1.0  # a square on a background
    labels = superpixels(x, segments=16)
    assert labels.shape == (2, 24, 24)
    left, right = set(labels[0, :, :12].unique().tolist()), set(labels[0, :, 12:].unique().tolist())
    assert not left & right
    inside = set(labels[1, 6:18, 6:18].unique().tolist())
    outside = set(labels[1][x[1, 0] == 0].unique().tolist())
    assert not inside & outside
    # consecutive labels from 0, no more than asked for
    for image in labels:
        used = image.unique()
        assert used.tolist() == list(range(len(used))) and len(used) <= 16  # noqa: PT018
    with pytest.raises(ValueError, match="segments 0"):
        superpixels(x, segments=0)


def test_irof_by_hand() -> None:
    model, x, worth, target = _linear_case()
    halves = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])  # sums 14 (mean 3.5), 22 (5.5)
    result = irof(model, x, worth, target, segments=halves)
    clean = model(x)[0].softmax(0)[0]
    after_right = torch.tensor([1.4, 0.0]).softmax(0)[0]
    assert result.curves[0].tolist() == pytest.approx([after_right / clean, 0.5 / clean])
    # AOC with unit steps: 2 - (r1 + r2) / 2
    expected = 2 - (after_right / clean + 0.5 / clean) / 2
    assert result.aoc.tolist() == pytest.approx([float(expected)])
    with pytest.raises(ValueError, match="one label a pixel"):
        irof(model, x, worth, target, segments=torch.zeros(1, 3, 3, dtype=torch.long))


def test_irof_equals_quantus_on_the_same_superpixels(monkeypatch: pytest.MonkeyPatch) -> None:
    # Quantus 0.6.0's IROF masks with one channel and refuses an input of three ("The shape of
    # arr must be the same as the mask shape"): it is compared on the grey case. Its area
    # calls np.trapz, which NumPy 2.4 removed: np.trapezoid stands in.
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    from camkit.metrics.superpixels import superpixels
    from helpers.quantus_case import case

    c = gray_case()
    segments = superpixels(c["x"], segments=25)
    ours = irof(c["model"], c["x"], c["maps"], c["labels"], segments=segments)
    metric = quantus.IROF(
        perturb_baseline=0.0, normalise=False, return_aggregate=False, disable_warnings=True
    )

    def on_segments(x: torch.Tensor, maps: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        replay = iter(segments.numpy())
        with mock.patch(
            "quantus.helpers.utils.get_superpixel_segments",
            side_effect=lambda *_, **__: next(replay),
        ):
            return metric(
                model=c["model"],
                x_batch=x.numpy(),
                y_batch=labels.numpy(),
                a_batch=maps[:, None].double().numpy(),
            )

    theirs = on_segments(c["x"], c["maps"], c["labels"])
    assert (
        compared(
            "IROF (area over the curve)", ours.aoc, torch.tensor(np.asarray(theirs, np.float64))
        )
        < 1e-4
    )
    colour = case()
    with pytest.raises(AssertionError, match="same as the mask shape"):
        on_segments(colour["x"], colour["maps"], colour["labels"])
