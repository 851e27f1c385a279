"""Average Drop, Increase in Confidence and Win %: exact values on hand-sized inputs."""

from __future__ import annotations

import pytest
import torch

import camkit
from camkit.metrics import Confidence, confidence, win_rate
from helpers.pixel_model import PixelScore

WEIGHTS = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, 2, 2): one channel


def test_average_drop_and_increase_by_hand() -> None:
    model = PixelScore(WEIGHTS)
    x = torch.ones(2, 1, 2, 2)  # Y = 1 + 2 + 3 + 4 = 10 for both
    maps = torch.tensor([[[1.0, 0.0], [0.0, 0.5]], [[1.0, 1.0], [1.0, 1.0]]])
    result = confidence(model, x, maps, targets=0, score="logit")
    assert result.base.tolist() == [10.0, 10.0]
    assert result.masked.tolist() == [3.0, 10.0]  # 1 * 1 + 0.5 * 4 = 3; unchanged
    assert result.drop.tolist() == pytest.approx([0.7, 0.0])
    assert result.average_drop == pytest.approx(35.0)  # (70 + 0) / 2
    assert result.increase_in_confidence == 0.0


def test_increase_in_confidence_and_clamped_drop() -> None:
    model = PixelScore(torch.tensor([[[1.0, 2.0], [3.0, -4.0]]]))
    x = torch.ones(2, 1, 2, 2)  # Y = 2
    maps = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    result = confidence(model, x, maps, targets=[0, 0], score="logit")
    assert result.masked.tolist() == [6.0, 1.0]  # the negative pixel masked out; halved
    assert result.average_drop == pytest.approx(25.0)  # max(0, -2)/2 = 0 and 1/2 = 50% -> 25
    assert result.increase_in_confidence == 50.0


def test_baseline_is_what_a_zero_map_leaves() -> None:
    model = PixelScore(WEIGHTS)
    x = torch.full((1, 1, 2, 2), 3.0)
    result = confidence(model, x, torch.zeros(1, 2, 2), targets=0, score="logit", fill=1.0)
    assert result.masked.tolist() == [10.0]  # every pixel becomes the baseline 1


def test_a_per_channel_baseline_goes_to_the_channel_axis() -> None:
    model = PixelScore(torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]))
    x = torch.zeros(1, 2, 2, 2)  # width 2 = channels 2: a wrong broadcast would go unnoticed
    result = confidence(
        model, x, torch.zeros(1, 2, 2), 0, fill=torch.tensor([1.0, 5.0]), score="logit"
    )
    assert result.masked.tolist() == [4.0]  # channel 0 becomes 1 everywhere: 4 pixels
    with pytest.raises(ValueError, match="3 entries for inputs with 2 channels"):
        confidence(model, x, torch.zeros(1, 2, 2), 0, fill=torch.tensor([1.0, 2.0, 3.0]))


def test_softmax_scores_by_hand() -> None:
    model = PixelScore(WEIGHTS, other=0.0)
    x = torch.full((1, 1, 2, 2), 0.1)  # logits [1, 0]
    result = confidence(model, x, torch.zeros(1, 2, 2), targets=0)  # masked logits [0, 0]
    expected = torch.tensor(1.0).exp() / (torch.tensor(1.0).exp() + 1)
    assert result.base.item() == pytest.approx(expected.item())
    assert result.masked.item() == pytest.approx(0.5)


def test_takes_an_explanation_with_its_targets_and_reuses_the_clean_pass(tiny, images) -> None:
    explanation = camkit.GradCAM(tiny)(images, targets=[1, 2, 3])
    with torch.no_grad():
        logits = tiny(images)
    calls = []
    tiny.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        result = confidence(tiny, images, explanation, base=logits.softmax(dim=1))
    finally:
        tiny._forward_hooks.clear()
    assert calls == [3]  # only the masked inputs were scored
    expected = logits.softmax(dim=1)[torch.arange(3), torch.tensor([1, 2, 3])]
    assert torch.allclose(result.base, expected)
    masked = images * explanation.maps
    with torch.no_grad():
        again = tiny(masked).softmax(dim=1)[torch.arange(3), torch.tensor([1, 2, 3])]
    assert torch.allclose(result.masked, again, atol=1e-6)


def test_default_target_is_the_prediction(tiny, images) -> None:
    maps = torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(0))
    result = confidence(tiny, images, maps)
    with torch.no_grad():
        probabilities = tiny(images).softmax(dim=1)
    assert torch.allclose(result.base, probabilities.max(dim=1).values)


def test_win_rate_by_hand() -> None:
    a = Confidence(torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([0.9, 0.2, 1.2, 0.5]))
    b = Confidence(torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([0.5, 0.5, 1.1, 0.5]))
    # drops: a = [0.1, 0.8, -0.2, 0.5], b = [0.5, 0.5, -0.1, 0.5]: a wins 1st and 3rd, 4th tied
    assert win_rate(a, b) == 50.0
    assert win_rate(b, a) == 25.0


def test_bad_inputs_are_named() -> None:
    model = PixelScore(WEIGHTS)
    x = torch.ones(2, 1, 2, 2)
    with pytest.raises(ValueError, match=r"do not match the inputs' spatial size \(2, 2\)"):
        confidence(model, x, torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match="3 targets for 2 inputs"):
        confidence(model, x, torch.ones(2, 2, 2), targets=[0, 1, 0])
    with pytest.raises(ValueError, match="compares the same inputs"):
        win_rate(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="score must be"):
        confidence(model, x, torch.ones(2, 2, 2), score="probability")  # type: ignore[arg-type]


def test_an_explanation_of_several_targets_asks_for_one(tiny, images) -> None:
    explanation = camkit.GradCAM(tiny)(images, targets=camkit.TopK(2))
    with pytest.raises(ValueError, match=r"2 targets per input.*maps\[:, k\]"):
        confidence(tiny, images, explanation)
    result = confidence(tiny, images, explanation.maps[:, 1], explanation.targets[:, 1])
    assert result.base.shape == (3,)
