"""Sparseness, complexity and effective complexity: values worked out by hand, and Quantus."""

from __future__ import annotations

import math

import pytest
import quantus
import torch

from camkit.metrics.complexity import complexity, effective_complexity, sparseness
from helpers.quantus_case import case, compared, quantus_scores


def test_sparseness_is_the_gini_index_worked_by_hand() -> None:
    # sorted 0, 0, 1, 3 (n = 4, sum 4): ((2-5)*0 + (4-5)*0 + (6-5)*1 + (8-5)*3) / (4 * 4) = 10/16
    maps = torch.tensor([[[3.0, 0.0], [1.0, 0.0]]])
    assert sparseness(maps).tolist() == [0.625]
    assert sparseness(-maps).tolist() == [0.625]  # of the absolute values
    assert sparseness(torch.zeros(1, 2, 2)).tolist() == [0.0]  # a constant map, as camkit has it
    one_pixel = torch.zeros(1, 3, 3)
    one_pixel[0, 1, 1] = 5.0
    assert sparseness(one_pixel)[0] == pytest.approx(8 / 9)  # one pixel of n: (n - 1) / n


def test_complexity_is_the_entropy_worked_by_hand() -> None:
    # shares 3/4, 1/4: -(0.75 ln 0.75 + 0.25 ln 0.25)
    maps = torch.tensor([[[3.0, 0.0], [1.0, 0.0]]])
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert complexity(maps)[0] == pytest.approx(expected, rel=1e-6)
    assert complexity(torch.ones(1, 4, 4))[0] == pytest.approx(math.log(16), rel=1e-6)
    assert complexity(torch.zeros(1, 4, 4))[0] == pytest.approx(math.log(16), rel=1e-6)


def test_effective_complexity_counts_pixels_above_eps_of_the_largest() -> None:
    maps = torch.tensor([[[2.0, 1e-5], [3e-5, 0.0]]])  # over the largest: 1, 5e-6, 1.5e-5, 0
    assert effective_complexity(maps, eps=1e-5).tolist() == [2]
    assert effective_complexity(maps, eps=0.0).tolist() == [3]
    assert effective_complexity(torch.zeros(1, 2, 2)).tolist() == [0]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (sparseness, quantus.Sparseness),
        (complexity, quantus.Complexity),
        (effective_complexity, quantus.EffectiveComplexity),
    ],
)
def test_equal_to_quantus_on_grad_cam_maps_of_the_bundled_model(ours, theirs) -> None:
    # Quantus adds 1e-7 to every value before the Gini index and 1e-12 inside the logarithm,
    # and scales the whole batch by its largest value (camkit's maps already peak at 1).
    mine = ours(case()["maps"])
    reference = quantus_scores(theirs(disable_warnings=True))
    assert compared(theirs.__name__, mine, reference) < 2e-6
