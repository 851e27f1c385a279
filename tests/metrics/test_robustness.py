"""Max- and average sensitivity: worked by hand, and against Quantus on the same noise."""

from __future__ import annotations

import warnings
from typing import Any
from unittest import mock

import numpy as np
import pytest
import quantus
import torch

import camkit
from camkit.errors import CamkitWarning
from camkit.metrics.robustness import (
    consistency,
    continuity,
    continuity_shifts,
    relative_stability,
    sensitivity,
    top_units,
    translated,
)
from helpers.quantus_case import case, compared


def _square(inputs: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    return inputs[:, 0] ** 2


def test_changes_worked_by_hand() -> None:
    x = torch.ones(2, 1, 2, 2)
    x[1] = 2.0
    noise = torch.zeros(2, 2, 1, 2, 2)
    noise[0, :, :, 0, 0] = 1.0  # sample 0: one pixel of each input up by 1
    targets = torch.zeros(2, dtype=torch.long)
    s = sensitivity(_square, x, _square(x, targets), targets, noise=noise)
    # input 0: map 1,1,1,1 (norm 2); pixel 1 -> 4: change 3, relative 1.5; sample 1: none
    # input 1: map 4,4,4,4 (norm 8); pixel 2 -> 9: change 5, relative 0.625
    assert s.changes.tolist() == [[1.5, 0.0], [0.625, 0.0]]
    assert s.maximum.tolist() == [1.5, 0.625]
    assert s.average.tolist() == [0.75, 0.3125]


def test_noise_is_bounded_drawn_per_call_and_a_zero_map_is_said() -> None:
    seen: list[torch.Tensor] = []

    def record(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(inputs)
        return inputs[:, 0]

    x = torch.zeros(3, 1, 4, 4)
    targets = torch.zeros(3, dtype=torch.long)
    s = sensitivity(
        record,
        x,
        torch.zeros(3, 4, 4),
        targets,
        samples=5,
        radius=0.1,
        generator=torch.Generator().manual_seed(0),
        rows_per_call=6,
    )
    assert [len(t) for t in seen] == [6, 6, 3]  # 2 samples of the 3 inputs per call
    assert float(torch.cat(seen).abs().max()) <= 0.1
    assert torch.isinf(s.changes).all()  # a zero map that stops being zero: an infinite change
    with pytest.raises(ValueError, match="samples 0"):
        sensitivity(record, x, torch.zeros(3, 4, 4), targets, samples=0)


@pytest.mark.parametrize("name", ["MaxSensitivity", "AvgSensitivity"])
def test_equal_to_quantus_with_grad_cam_explaining_the_same_noise(name: str) -> None:
    c = case()
    model, x, labels = c["model"], c["x"][:8], c["labels"][:8]
    explainer = camkit.GradCAM(model)
    maps = explainer(x, labels).maps[:, 0]
    samples = 4
    noise = (
        torch.rand(samples, *x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ) * 0.2
    ours = sensitivity(lambda i, t: explainer(i, t).maps[:, 0], x, maps, labels, noise=noise)
    mine = ours.maximum if name == "MaxSensitivity" else ours.average

    def explain_func(
        model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object
    ) -> np.ndarray:
        done = explainer(torch.as_tensor(inputs), torch.as_tensor(targets))
        return done.maps.double().numpy()  # (N, 1, H, W)

    replay = iter([noise[i].flatten(1).double().numpy() for i in range(samples)])
    metric = getattr(quantus, name)(nr_samples=samples, disable_warnings=True)
    with mock.patch("numpy.random.uniform", side_effect=lambda *_, **__: next(replay)):
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=labels.numpy(),
            a_batch=maps[:, None].double().numpy(),
            explain_func=explain_func,
        )
    assert compared(name, mine, torch.tensor(np.asarray(theirs))) < 1e-5


def test_local_lipschitz_worked_by_hand_and_equal_to_quantus_on_the_same_noise() -> None:
    x = torch.ones(1, 1, 2, 2)
    noise = torch.zeros(2, 1, 1, 2, 2)
    noise[0, 0, 0, 0, 0] = 0.5  # ||x' - x|| = 0.5; the squared map moves by 2.25 - 1 = 1.25
    noise[1, 0, 0] = 0.1  # every pixel: ||x' - x|| = 0.2, the map by 4 x 0.21 -> 0.42
    targets = torch.zeros(1, dtype=torch.long)
    s = sensitivity(_square, x, _square(x, targets), targets, noise=noise)
    assert s.lipschitz.tolist() == pytest.approx([1.25 / 0.5], rel=1e-6)

    c = case()
    model, x, labels = c["model"], c["x"][:8], c["labels"][:8]
    explainer = camkit.GradCAM(model)
    maps = explainer(x, labels).maps[:, 0]
    samples = 3
    noise = 0.1 * torch.randn(samples, *x.shape, generator=torch.Generator().manual_seed(5))
    ours = sensitivity(lambda i, t: explainer(i, t).maps[:, 0], x, maps, labels, noise=noise)

    def explain_func(
        model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object
    ) -> np.ndarray:
        return explainer(torch.as_tensor(inputs), torch.as_tensor(targets)).maps.double().numpy()

    replay = iter([noise[i].flatten(1).double().numpy() for i in range(samples)])
    metric = quantus.LocalLipschitzEstimate(nr_samples=samples, disable_warnings=True)
    with mock.patch("numpy.random.normal", side_effect=lambda *_, **__: next(replay)):
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=labels.numpy(),
            a_batch=maps[:, None].double().numpy(),
            explain_func=explain_func,
        )
    assert compared("LocalLipschitzEstimate", ours.lipschitz, torch.tensor(theirs)) < 1e-5


def test_relative_stability_by_hand() -> None:
    x = torch.ones(1, 1, 2, 2)
    targets = torch.zeros(1, dtype=torch.long)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]]))
    noise = torch.zeros(1, 1, 1, 2, 2)
    noise[0, 0, 0, 0, 0] = 0.5  # x' - x: 0.5 at one pixel, relative 0.5
    # the squared map moves by 1.25 at that pixel of a map of 1s: relative 1.25; the logits
    # move by 0.5 (only logit 0 sees that pixel)
    s = relative_stability(_square, net, x, _square(x, targets), targets, noise=noise)
    assert s.input.tolist() == pytest.approx([1.25 / 0.5])
    assert s.output.tolist() == pytest.approx([1.25 / 0.5])
    # a zero in the map divides by eps, as in the paper and Quantus
    zero = torch.ones(1, 2, 2)
    zero[0, 1, 1] = 0.0
    moved = relative_stability(_square, net, x, zero, targets, noise=noise, eps=1e-3)
    assert float(moved.input) > 1e3


@pytest.mark.parametrize("name", ["RelativeInputStability", "RelativeOutputStability"])
def test_relative_stability_equals_quantus_on_the_same_noise(name: str) -> None:
    c = case()
    model, x, labels = c["model"], c["x"][:8], c["labels"][:8]
    explainer = camkit.GradCAM(model)
    maps = explainer(x, labels).maps[:, 0]
    samples = 3
    noise = 0.02 + 0.18 * torch.rand(samples, *x.shape, generator=torch.Generator().manual_seed(4))
    explain = lambda i, t: explainer(i, t).maps[:, 0]  # noqa: E731
    ours = relative_stability(explain, model, x, maps, labels, noise=noise)
    mine = ours.input if name == "RelativeInputStability" else ours.output

    def explain_func(
        model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object
    ) -> np.ndarray:
        return explainer(torch.as_tensor(inputs), torch.as_tensor(targets)).maps.double().numpy()

    replay = iter([noise[i].flatten(1).double().numpy() for i in range(samples)])
    metric = getattr(quantus, name)(nr_samples=samples, disable_warnings=True)
    with mock.patch("numpy.random.uniform", side_effect=lambda *_, **__: next(replay)):
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=labels.numpy(),
            a_batch=maps[:, None].double().numpy(),
            explain_func=explain_func,
        )
    assert _relative_to_quantus(name, mine, theirs) < 1e-4


def _relative_to_quantus(name: str, ours: torch.Tensor, theirs: object) -> float:
    """The largest relative difference to Quantus' scores, printed (pass or fail)."""
    reference = torch.tensor(np.asarray(theirs, dtype=np.float64))
    relative = float(((ours.double() - reference).abs() / reference.abs()).max())
    print(f"{name}: camkit against Quantus, largest relative difference {relative:.3g}")
    return relative


def _grad_cam_case(images: int = 8) -> tuple[Any, ...]:
    c = case()
    model, x, labels = c["model"], c["x"][:images], c["labels"][:images]
    explainer = camkit.GradCAM(model)

    def explain_func(
        model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object
    ) -> np.ndarray:
        return explainer(torch.as_tensor(inputs), torch.as_tensor(targets)).maps.double().numpy()

    return model, x, labels, explainer, explain_func


def test_relative_representation_stability_equals_quantus_on_the_same_noise() -> None:
    model, x, labels, explainer, explain_func = _grad_cam_case()
    maps = explainer(x, labels).maps[:, 0]
    samples, layer = 3, "features.9.0"
    noise = 0.02 + 0.18 * torch.rand(samples, *x.shape, generator=torch.Generator().manual_seed(4))
    ours = relative_stability(
        lambda i, t: explainer(i, t).maps[:, 0], model, x, maps, labels, noise=noise, layers=[layer]
    )
    assert ours.representation is not None
    replay = iter([noise[i].flatten(1).double().numpy() for i in range(samples)])
    metric = quantus.RelativeRepresentationStability(
        nr_samples=samples, layer_names=[layer], disable_warnings=True
    )
    with mock.patch("numpy.random.uniform", side_effect=lambda *_, **__: next(replay)):
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=labels.numpy(),
            a_batch=maps[:, None].double().numpy(),
            explain_func=explain_func,
        )
    assert (
        _relative_to_quantus("RelativeRepresentationStability", ours.representation, theirs) < 1e-4
    )


def test_translation_and_continuity_by_hand() -> None:
    x = torch.arange(1.0, 5.0).view(1, 1, 1, 4)
    assert translated(x, -1, torch.tensor(9.0)).flatten().tolist() == [2, 3, 4, 9]
    assert translated(x, 2, torch.tensor(0.0)).flatten().tolist() == [0, 0, 1, 2]
    assert translated(x, 4, torch.tensor(0.0)).flatten().tolist() == [0, 0, 0, 0]
    # a map that is the input itself: ||a' - a||_1 / ||x' - x||_2 for one shift of 1 (fill 0):
    # x' - x = (1, 1, 1, 1): L1 4, L2 2 -> 2; the shift of -... gives less
    identity = lambda inputs, targets: inputs[:, 0]  # noqa: E731
    r = continuity(identity, x, x[:, 0], torch.zeros(1, dtype=torch.long), steps=9)
    assert continuity_shifts(4, 9) == [-3, -2, -1, 0, 1, 2, 3, 4, 5]
    moved = [translated(x, s, torch.tensor(0.0)) - x for s in continuity_shifts(4, 9)]
    expected = max(float(m.abs().sum() / (m.norm() + 1e-9)) for m in moved)
    assert r.tolist() == pytest.approx([expected])
    with pytest.raises(ValueError, match="steps 10: give 1 to 9"):
        continuity_shifts(4, 10)


def test_continuity_equals_quantus_with_grad_cam() -> None:
    model, x, labels, explainer, explain_func = _grad_cam_case(6)
    maps = explainer(x, labels).maps[:, 0]
    black = x.amin(dim=(1, 2, 3), keepdim=True)  # Quantus' "black": each input's minimum

    def explain(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # a map of an input moved far off is constant
            warnings.simplefilter("ignore", CamkitWarning)
            return explainer(inputs, targets).maps[:, 0]

    ours = continuity(explain, x, maps, labels, steps=6, fill=black)
    metric = quantus.Continuity(nr_steps=6, normalise=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CamkitWarning)
        theirs = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=labels.numpy(),
            a_batch=maps[:, None].double().numpy(),
            explain_func=explain_func,
        )
    assert _relative_to_quantus("Continuity", ours, theirs) < 1e-4


def test_consistency_by_hand_on_squares() -> None:
    maps = torch.zeros(3, 4, 4)
    maps[0, 0, 0] = maps[1, 1, 1] = 1.0  # both peak in the top-left square of 2
    maps[2, 3, 3] = 1.0
    assert top_units(maps, patch=2).flatten().tolist() == [0, 0, 3]
    assert consistency(maps, torch.tensor([1, 1, 1]), patch=2).tolist() == [1.0, 1.0, 0.0]
    assert consistency(maps, torch.tensor([1, 0, 1]), patch=2).tolist() == [0.0, 0.0, 0.0]
    assert consistency(maps, torch.tensor([1, 1, 1])).tolist() == [0.0, 0.0, 0.0]  # pixels


def test_consistency_equals_quantus_given_the_same_discretisation() -> None:
    # Quantus' default discretisation, top_n_sign, keeps the signs of the map's first n
    # values (np.sign(a)[:n]), not of its n largest: two maps alike in their top-left corner
    # count as alike wherever they peak. Given camkit's (the top square), the two agree.
    c = case()
    model, x, maps = c["model"], c["x"], c["maps"]
    predicted = model(x).argmax(dim=1)
    ours = consistency(maps, predicted, patch=48)

    def top_square(a: np.ndarray, **_: object) -> int:
        square = top_units(torch.as_tensor(a).view(1, *maps.shape[1:]).float(), patch=48)
        return int(square)

    metric = quantus.Consistency(discretise_func=top_square, normalise=False, disable_warnings=True)
    theirs = metric(
        model=model,
        x_batch=x.numpy(),
        y_batch=c["labels"].numpy(),
        a_batch=maps[:, None].double().numpy(),
    )
    assert (
        compared(
            "Consistency (top square of 48)",
            ours,
            torch.tensor(np.asarray(theirs, dtype=np.float64)),
        )
        < 1e-6
    )
    assert float(ours.mean()) > 0
    from quantus.functions.discretise_func import top_n_sign

    corner = np.zeros(16)
    elsewhere = corner.copy()
    elsewhere[-1] = 1.0  # peaks in the last value: the same label as an all-zero map
    assert top_n_sign(corner) == top_n_sign(elsewhere)
