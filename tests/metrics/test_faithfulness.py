"""Faithfulness by random subsets: worked by hand, and against Quantus on the same subsets."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import quantus
import torch

from camkit.metrics.faithfulness import (
    faithfulness_correlation,
    infidelity,
    random_subsets,
    sensitivity_n,
    subset_sizes,
    sufficiency,
)
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
    r = faithfulness_correlation(
        model,
        x,
        maps,
        torch.zeros(2, dtype=torch.long),
        runs=5,
        subset=3,
        fill=torch.tensor([0.2, 0.5, 0.7]),
    )
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
        nr_runs=runs,
        subset_size=size,
        perturb_baseline=0.0,
        return_aggregate=False,
        disable_warnings=True,
    )
    with mock.patch("numpy.random.choice", side_effect=lambda *_, **__: next(replay)):
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=labels.numpy(),
            a_batch=maps[:, None].double().numpy(),
        )
    assert compared("FaithfulnessCorrelation", ours, torch.tensor(np.asarray(theirs))) < 1e-6


def test_sensitivity_n_is_faithfulness_correlation_at_each_size_as_quantus_draws_it() -> None:
    # Ancona et al.'s Sensitivity-N is the faithfulness correlation at subset size n: each
    # column equals Quantus' FaithfulnessCorrelation(subset_size=n) on the same subsets.
    c = case()
    model, x = Gray(c["model"]).eval(), c["x"].mean(dim=1, keepdim=True)
    maps, labels, runs = c["maps"], c["labels"], 10
    sizes = subset_sizes(maps[0].numel(), count=2)
    drawn = torch.Generator().manual_seed(5)
    subsets = [random_subsets(len(x), maps[0].numel(), runs, n, drawn) for n in sizes]
    ours = torch.stack(
        [faithfulness_correlation(model, x, maps, labels, subsets=s) for s in subsets], dim=1
    )
    assert sensitivity_n(model, x, maps, labels, sizes=sizes, runs=runs).shape == (16, 2)
    for column, (n, chosen) in enumerate(zip(sizes, subsets, strict=True)):
        replay = iter([chosen[b, r].numpy() for r in range(runs) for b in range(len(x))])
        metric = quantus.FaithfulnessCorrelation(
            nr_runs=runs,
            subset_size=n,
            perturb_baseline=0.0,
            return_aggregate=False,
            disable_warnings=True,
        )
        with mock.patch("numpy.random.choice", side_effect=lambda *_, r=replay, **__: next(r)):
            theirs = metric(
                model=model,
                x_batch=x.numpy(),
                y_batch=labels.numpy(),
                a_batch=maps[:, None].double().numpy(),
            )
        difference = compared(
            f"Sensitivity-{n} (FaithfulnessCorrelation)",
            ours[:, column],
            torch.tensor(np.asarray(theirs)),
        )
        assert difference < 2e-5  # float32 sums of up to 7,373 values


def test_quantus_sensitivity_n_scores_only_its_first_batch() -> None:
    # Quantus 0.6.0's SensitivityN is another protocol (features removed in the map's order,
    # correlated across images step by step) and keeps only the first batch's scores: 16
    # images in batches of 8 score as the first 8 alone. camkit follows the paper.
    from helpers.quantus_case import gray_case

    c = gray_case()
    step = c["maps"][0].numel() // 8
    metric = quantus.SensitivityN(
        features_in_step=step,
        n_max_percentage=1.0,
        normalise=False,
        return_aggregate=False,
        disable_warnings=True,
    )
    whole = metric(
        model=c["model"],
        x_batch=c["x"].numpy(),
        y_batch=c["labels"].numpy(),
        a_batch=c["maps"][:, None].double().numpy(),
        batch_size=8,
    )
    first = metric(
        model=c["model"],
        x_batch=c["x"][:8].numpy(),
        y_batch=c["labels"][:8].numpy(),
        a_batch=c["maps"][:8, None].double().numpy(),
        batch_size=8,
    )
    print("Quantus SensitivityN on 16 images in batches of 8:", np.round(whole, 4))
    assert np.allclose(whole, first)


def test_infidelity_by_hand() -> None:
    torch.manual_seed(0)
    w = torch.rand(6, 6)
    model, x = _Linear(w), torch.rand(2, 1, 6, 6)
    targets = torch.zeros(2, dtype=torch.long)
    exact = w.expand(2, 6, 6)  # a linear model's drop for x - I is exactly sum(w * I)
    assert infidelity(model, x, exact, targets, normalise=False).tolist() == pytest.approx(
        [0, 0], abs=1e-9
    )
    doubled = infidelity(model, x, 2 * exact, targets, normalise=False)
    assert (doubled > 1e-4).all()  # twice the worth: wrong by the scale ...
    assert infidelity(model, x, 2 * exact, targets).tolist() == pytest.approx([0, 0], abs=1e-9)
    # ... which the best scale removes: E[(sum(2w I) - sum(w I))^2] = sum(w^2) std^2
    noise = 0.1 * torch.randn(400, 2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    expected = float(w.square().sum()) * 0.01
    assert infidelity(model, x, 2 * exact, targets, noise=noise, normalise=False).tolist() == (
        pytest.approx([expected, expected], rel=0.15)
    )


@pytest.mark.parametrize("normalise", [False, True])
def test_infidelity_equals_captum_on_the_same_noise(normalise: bool) -> None:
    from captum.metrics import infidelity as captum_infidelity

    c = case()
    model, x, maps, labels = c["model"], c["x"][:8], c["maps"][:8], c["labels"][:8]
    samples = 6
    noise = 0.1 * torch.randn(samples, *x.shape, generator=torch.Generator().manual_seed(3))
    ours = infidelity(model, x, maps, labels, noise=noise, normalise=normalise)
    # Captum repeats each input `samples` times in a row and asks for their perturbations
    repeated = noise.transpose(0, 1).flatten(0, 1)

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return repeated, inputs - repeated

    with torch.no_grad():
        theirs = captum_infidelity(
            model,
            perturb,
            x,
            maps[:, None].expand_as(x).contiguous(),
            target=labels,
            n_perturb_samples=samples,
            normalize=normalise,
        )
    difference = float((ours.double() - theirs.double()).abs().max() / theirs.abs().max())
    print(
        f"Infidelity (normalise={normalise}): camkit against Captum, largest relative "
        f"difference {difference:.3g} over 8 images"
    )
    assert difference < 1e-4


def test_sufficiency_by_hand_and_against_quantus() -> None:
    maps = torch.tensor([[0.0, 1.0, 0.5], [0.1, 0.9, 0.5], [1.0, 0.0, 0.5]])
    # pixel 3 never varies: it counts 0; 0 and 1 lie close, 2 far from both
    assert sufficiency(maps, torch.tensor([1, 1, 0]), threshold=0.5).tolist() == [1.0, 1.0, 0.0]
    assert sufficiency(maps, torch.tensor([1, 0, 0]), threshold=0.5).tolist() == [0.0, 0.0, 0.0]
    assert sufficiency(maps[:1], torch.tensor([1])).tolist() == [0.0]
    from helpers.quantus_case import gray_case, quantus_gray

    c = gray_case()
    predicted = c["model"](c["x"]).argmax(dim=1)
    for threshold in (0.6, 0.8):
        ours = sufficiency(c["maps"], predicted, threshold=threshold)
        theirs = quantus_gray(quantus.Sufficiency(threshold=threshold, disable_warnings=True))
        assert compared(f"Sufficiency (threshold {threshold})", ours, theirs) < 1e-6
    assert 0 < float(ours.mean()) < 1


def test_quantus_infidelity_draws_the_same_perturbation_every_sample() -> None:
    # Quantus 0.6.0's Infidelity removes squares cumulatively in raster order, the same for each
    # of its n_perturb_samples: one sample or three give the same figure.
    c = case()
    numpy = {
        "model": c["model"],
        "x_batch": c["x"][:4].numpy(),
        "y_batch": c["labels"][:4].numpy(),
        "a_batch": c["maps"][:4, None].double().numpy(),
    }
    one = quantus.Infidelity(perturb_patch_sizes=[48], n_perturb_samples=1, disable_warnings=True)
    three = quantus.Infidelity(perturb_patch_sizes=[48], n_perturb_samples=3, disable_warnings=True)
    assert np.allclose(one(**numpy), three(**numpy))
