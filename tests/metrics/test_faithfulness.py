"""Faithfulness by random subsets: worked by hand, and against Quantus on the same subsets."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import quantus
import torch

from camkit.metrics.faithfulness import faithfulness_correlation, random_subsets
from helpers.quantus_case import Gray, case, compared


class _Linear(torch.nn.Module):
    """logit 0 = sum of w * x over pixels: removing a subset (fill 0) drops it by its w * x."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = (x[:, 0] * self.w).flatten(1).sum(dim=1)
        return torch.stack([first, -first], dim=1)


def test_a_map_equal_to_what_each_pixel_is_worth_correlates_1_and_its_opposite_minus_1() -> None:
    torch.manual_seed(0)
    w = torch.rand(6, 6)
    x = torch.rand(3, 1, 6, 6)
    model, targets = _Linear(w), torch.zeros(3, dtype=torch.long)
    worth = (w * x[:, 0]).clamp_min(0)  # exactly each pixel's share of the logit
    drawn = torch.Generator().manual_seed(1)
    r = faithfulness_correlation(model, x, worth, targets, runs=30, subset=5, generator=drawn)
    assert r.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    r = faithfulness_correlation(model, x, 1 - worth, targets, runs=30, subset=5, generator=drawn)
    assert r.tolist() == pytest.approx([-1.0, -1.0, -1.0], abs=1e-5)
    flat = torch.ones(3, 6, 6)  # every subset has the same sum: no correlation to speak of
    assert faithfulness_correlation(model, x, flat, targets, runs=10, subset=5).tolist() == [
        0,
        0,
        0,
    ]


def test_subsets_are_distinct_pixels_and_the_fill_is_per_channel() -> None:
    subsets = random_subsets(4, 50, runs=7, subset=20, generator=torch.Generator().manual_seed(0))
    assert subsets.shape == (4, 7, 20)
    assert all(len(set(row.tolist())) == 20 for row in subsets.flatten(0, 1))
    with pytest.raises(ValueError, match="subset 51: give 1 to 50 pixels"):
        random_subsets(1, 50, runs=1, subset=51)
    # a per-channel fill equal to the input's own values removes nothing: no drop anywhere
    x = torch.rand(2, 3, 4, 4)
    x[:] = torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    maps = torch.rand(2, 4, 4)
    r = faithfulness_correlation(model, x, maps, torch.zeros(2, dtype=torch.long), runs=5,
                                 subset=3, fill=torch.tensor([0.2, 0.5, 0.7]))  # fmt: skip
    assert r.tolist() == [0.0, 0.0]


def test_equal_to_quantus_on_the_same_subsets() -> None:
    c = case()
    model, x = Gray(c["model"]).eval(), c["x"].mean(dim=1, keepdim=True)
    maps, labels = c["maps"], c["labels"]
    runs, size = 20, 64
    subsets = random_subsets(len(x), maps[0].numel(), runs, size, torch.Generator().manual_seed(0))
    ours = faithfulness_correlation(model, x, maps, labels, subsets=subsets, fill=0.0)
    # Quantus draws each image's subset with np.random.choice, run by run: replay ours
    replay = iter([subsets[b, r].numpy() for r in range(runs) for b in range(len(x))])
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=runs, subset_size=size, perturb_baseline=0.0, return_aggregate=False,
        disable_warnings=True,
    )  # fmt: skip
    with mock.patch("numpy.random.choice", side_effect=lambda *_, **__: next(replay)):
        theirs = metric(model=model, x_batch=x.numpy(), y_batch=labels.numpy(),
                        a_batch=maps[:, None].double().numpy())  # fmt: skip
    assert compared("FaithfulnessCorrelation", ours, torch.tensor(np.asarray(theirs))) < 1e-6
