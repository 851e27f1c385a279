"""ROAD: noisy linear imputation solved by hand on 3x3 images, and MoRF/LeRF scores."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit.metrics import Road, impute, road
from helpers.pixel_model import PixelScore


def _removed(*pixels: tuple[int, int], size: int = 3) -> torch.Tensor:
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    for y, x in pixels:
        mask[0, y, x] = True
    return mask


def test_one_pixel_is_the_weighted_mean_of_its_neighbours() -> None:
    x = torch.arange(9.0).view(1, 1, 3, 3)
    x[0, 0, 1, 1] = 100.0  # the value removed must not leak
    result = impute(x, _removed((1, 1)), noise=0.0)
    # direct neighbours 1, 3, 5, 7 weigh 1/6; diagonals 0, 2, 6, 8 weigh 1/12
    assert result[0, 0, 1, 1].item() == pytest.approx((1 + 3 + 5 + 7) / 6 + (0 + 2 + 6 + 8) / 12)
    kept = ~_removed((1, 1))[:, None]
    assert torch.equal(result[kept], x[kept])


def test_two_removed_pixels_solve_a_joint_system() -> None:
    x = torch.arange(9.0).view(1, 1, 3, 3)
    result = impute(x, _removed((1, 1), (1, 2)), noise=0.0)
    # centre c = 38/12 + r/6; right edge r (neighbour weights sum to 2/3) = 3.5 + c/4
    # => c = 90/23, r = 103/23
    assert result[0, 0, 1, 1].item() == pytest.approx(90 / 23, abs=1e-5)
    assert result[0, 0, 1, 2].item() == pytest.approx(103 / 23, abs=1e-5)


def test_a_corner_uses_only_the_neighbours_inside_the_image() -> None:
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 9.0
    result = impute(x, _removed((0, 0)), noise=0.0)
    assert result[0, 0, 0, 0].item() == pytest.approx((9 / 12) / (1 / 6 + 1 / 6 + 1 / 12))  # 1.8


def test_channels_are_independent_and_everything_removed_is_zero() -> None:
    x = torch.stack([torch.arange(9.0), 10 * torch.arange(9.0)]).view(1, 2, 3, 3)
    result = impute(x, _removed((1, 1)), noise=0.0)
    assert result[0, :, 1, 1].tolist() == pytest.approx([4.0, 40.0])
    everything = impute(x, torch.ones(1, 3, 3, dtype=torch.bool), noise=0.0)
    assert torch.equal(everything, torch.zeros_like(x))


def test_noise_touches_only_the_removed_pixels_and_repeats_with_a_seed() -> None:
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    removed = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(1)) < 0.5
    clean = impute(x, removed, noise=0.0)
    noisy = impute(x, removed, noise=0.01, generator=torch.Generator().manual_seed(3))
    again = impute(x, removed, noise=0.01, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again)
    difference = (noisy - clean).permute(1, 0, 2, 3)[:, removed]
    assert 0.008 < difference.std().item() < 0.012
    assert torch.equal(noisy.permute(1, 0, 2, 3)[:, ~removed], x.permute(1, 0, 2, 3)[:, ~removed])


def test_morf_and_lerf_by_hand() -> None:
    model = PixelScore(torch.ones(1, 3, 3), other=1.0)  # logits [sum of pixels, 1]
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 9.0
    relevance = torch.arange(9.0).view(1, 3, 3)
    relevance[0, 1, 1] = 100.0  # the centre is the most relevant, pixel (0, 0) the least
    share = [100 / 9]  # one pixel
    morf = road(model, x, relevance, 0, order="morf", percentages=share, noise=0.0, score="logit")
    lerf = road(model, x, relevance, 0, order="lerf", percentages=share, noise=0.0, score="logit")
    assert morf.scores.tolist() == [[0.0]]  # the centre imputed from its zero neighbours
    assert morf.correct.tolist() == [[False]]  # 0 < 1: no longer class 0
    assert lerf.scores[0, 0].item() == pytest.approx(9 + 1.8)  # the corner became 1.8
    assert lerf.correct.tolist() == [[True]]


def test_road_on_a_network_is_batched_and_repeatable(tiny, images) -> None:
    explanation = camkit.GradCAM(tiny)(images)
    first = road(tiny, images, explanation, percentages=[20, 60], rows_per_pass=4)
    again = road(tiny, images, explanation, percentages=[20, 60], rows_per_pass=64)
    assert torch.allclose(first.scores, again.scores, atol=1e-5)
    assert first.scores.shape == (3, 2)
    assert first.accuracy.shape == (2,)
    assert first.percentages.tolist() == [20.0, 60.0]


def test_road_summary() -> None:
    result = Road(
        torch.tensor([10.0, 90.0]), torch.zeros(2, 2), torch.tensor([[1, 0], [1, 1]]).bool(), "lerf"
    )
    assert result.accuracy.tolist() == [1.0, 0.5]
    assert result.mean_accuracy == 0.75


def test_bad_options_are_named() -> None:
    model = PixelScore(torch.ones(1, 3, 3))
    x, relevance = torch.zeros(1, 1, 3, 3), torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match="order must be 'morf'"):
        road(model, x, relevance, order="most")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"percentages must lie in \[0, 100\]"):
        road(model, x, relevance, percentages=[120])
    with pytest.raises(ValueError, match="impute takes"):
        impute(torch.zeros(3, 3), torch.zeros(3, 3, dtype=torch.bool))


def test_neighbour_sum_is_the_eight_neighbour_stencil() -> None:
    # The separable in-place form against the stencil written out: 1/6 direct, 1/12 diagonal.
    import torch.nn.functional as F

    from camkit.metrics.imputation import neighbour_sum

    stencil = torch.tensor([[1, 2, 1], [2, 0, 2], [1, 2, 1]], dtype=torch.float64) / 12
    v = torch.rand(3, 2, 17, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = F.conv2d(v.flatten(0, 1)[:, None], stencil[None, None], padding=1)
    assert torch.allclose(neighbour_sum(v), expected.view_as(v), atol=1e-12)


def test_an_imputation_does_not_depend_on_the_images_beside_it() -> None:
    # Each system stops at its own convergence, so a batch's figures are the same however the
    # rows were grouped (chunks of rows_per_pass, batches, Ray workers).
    from camkit.metrics import impute

    generator = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 24, 24, generator=generator)
    removed = (
        torch.rand(12, 24, 24, generator=generator) < torch.linspace(0.1, 0.9, 12)[:, None, None]
    )
    whole = impute(x, removed, noise=0.0)
    alone = torch.cat([impute(x[i : i + 1], removed[i : i + 1], noise=0.0) for i in range(12)])
    assert torch.equal(whole, alone)
