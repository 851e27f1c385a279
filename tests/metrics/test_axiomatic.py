"""The axiomatic metrics: worked by hand, and against Quantus 0.6.0 on the same model and maps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import quantus
import torch

import camkit
from camkit.methods import method_class
from camkit.metrics.axiomatic import (
    completeness,
    input_invariance,
    non_sensitivity,
    shifted_model,
)
from helpers.quantus_case import case, compared


def test_completeness_gap_by_hand() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x = torch.rand(3, 1, 2, 2)
    exact = (net[1].weight[0].detach() * x.flatten(1)).view(3, 2, 2)  # w * x sums to the drop
    result = completeness(net, x, exact, 0)
    assert result.gap.tolist() == pytest.approx([0, 0, 0], abs=1e-5)
    assert completeness(net, x, 2 * exact, 0).gap.tolist() == pytest.approx([1, 1, 1], rel=1e-4)
    # a per-input baseline: x itself drops nothing, and a zero map is then complete
    same = completeness(net, x, torch.zeros(3, 2, 2), 0, fill=x)
    assert same.drops.tolist() == [0, 0, 0]
    assert same.gap.tolist() == [0, 0, 0]


def _quantus_completeness(c: dict[str, Any], maps: torch.Tensor) -> tuple[list[bool], np.ndarray]:
    """Quantus' verdicts and the logit drops it computed (its output_func sees them)."""
    seen: list[np.ndarray] = []

    def record(drop: np.ndarray) -> np.ndarray:
        seen.append(drop)
        return drop

    metric = quantus.Completeness(output_func=record, normalise=False, disable_warnings=True)
    verdicts = metric(
        model=c["model"],
        x_batch=c["x"].numpy(),
        y_batch=c["labels"].numpy(),
        a_batch=maps[:, None].double().numpy(),
    )
    return list(verdicts), seen[0]


def test_completeness_drop_equals_quantus_and_its_exact_equality_is_brittle() -> None:
    from helpers.quantus_case import gray_case

    c = gray_case()
    model, x, maps, labels = c["model"], c["x"], c["maps"], c["labels"]
    black = x.amin(dim=(1, 2, 3), keepdim=True)  # Quantus' "black": each input's minimum
    ours = completeness(model, x, maps, labels, fill=black)
    verdicts, drops = _quantus_completeness(c, maps)
    assert compared("Completeness (the logit's drop)", ours.drops, torch.tensor(drops)) < 1e-5
    assert not any(verdicts)  # Grad-CAM's maps are not complete: neither says they are
    # maps scaled to sum to the drop: camkit's gap is float rounding; Quantus tests float
    # equality of a float64 sum and a float32 difference, and calls most of them incomplete
    scaled = maps / maps.flatten(1).sum(dim=1)[:, None, None] * ours.drops[:, None, None].float()
    assert float(completeness(model, x, scaled, labels, fill=black).gap.max()) < 1e-5
    verdicts, _ = _quantus_completeness(c, scaled)
    print(f"Quantus Completeness on maps that sum to the drop: {sum(verdicts)} of 16 complete")
    assert sum(verdicts) < 16


def test_quantus_completeness_fills_only_the_first_channel_of_a_colour_input() -> None:
    # Quantus fills as many input values as the map has (H x W of 3 x H x W): its baseline is
    # the input with channel 0 black and the other two kept. camkit fills every channel.
    c = case()
    x = c["x"]
    half_black = x.clone()
    half_black[:, 0] = x.amin(dim=(1, 2, 3))[:, None, None]
    ours = completeness(c["model"], x, c["maps"], c["labels"], fill=half_black)
    _, drops = _quantus_completeness(c, c["maps"])
    difference = compared("Completeness, Quantus' colour baseline", ours.drops, torch.tensor(drops))
    assert difference < 1e-5
    whole = completeness(
        c["model"], x, c["maps"], c["labels"], fill=x.amin(dim=(1, 2, 3), keepdim=True)
    )
    assert float((whole.drops - ours.drops).abs().max()) > 1.0


def _tiny() -> torch.nn.Sequential:
    """A small convolutional classifier on 1 x 10 x 10 inputs, its layers flat (Quantus
    shifts the model's first named module, which must be a layer: a block fails)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, 3),
    )


def _tiny_case() -> dict[str, Any]:
    model = _tiny().eval()
    x = torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(6, 10, 10, generator=torch.Generator().manual_seed(2))
    maps = torch.where(maps < 0.4, 0.0, maps)  # 40% of the pixels credited nothing
    return {"model": model, "x": x, "maps": maps, "labels": model(x).argmax(dim=1)}


def test_non_sensitivity_by_hand_on_squares() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2, bias=False))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[0, 0] = 1.0  # the model reads pixel (0, 0) only
    x = torch.ones(1, 1, 4, 4)
    right = torch.zeros(1, 4, 4)
    right[0, 1, 1] = 1.0  # credits the top-left square of 2, which holds (0, 0)
    assert non_sensitivity(net, x, right, 0, patch=2).tolist() == [0.0]
    wrong = torch.zeros(1, 4, 4)
    wrong[0, 3, 3] = 1.0  # credits the bottom-right square, misses the top-left one: 2
    assert non_sensitivity(net, x, wrong, 0, patch=2).tolist() == [2.0]


def test_non_sensitivity_equals_quantus_pixel_by_pixel() -> None:
    c = _tiny_case()
    black = c["x"].amin(dim=(1, 2, 3), keepdim=True)
    ours = non_sensitivity(c["model"], c["x"], c["maps"], c["labels"], fill=black)
    metric = quantus.NonSensitivity(features_in_step=1, normalise=False, disable_warnings=True)
    theirs = metric(
        model=c["model"],
        x_batch=c["x"].numpy(),
        y_batch=c["labels"].numpy(),
        a_batch=c["maps"][:, None].double().numpy(),
    )
    assert compared("NonSensitivity", ours, torch.tensor(np.asarray(theirs, np.float64))) == 0
    assert (ours > 0).all()  # random maps break it


def test_the_shifted_model_is_the_same_function_padding_included() -> None:
    model = camkit.models.load_shapes_model()
    x = case()["x"][:4]
    moved = shifted_model(model, -1.0)
    assert torch.allclose(moved(x - 1.0), model(x), atol=1e-5)
    assert [n for n, _ in moved.named_modules()] == [n for n, _ in model.named_modules()]


@pytest.mark.parametrize(
    ("method", "layer", "invariant"), [("gradcam", "2", True), ("fullgrad", None, False)]
)
def test_input_invariance_agrees_with_quantus_on_what_it_shifts(
    method: str, layer: str | None, invariant: bool
) -> None:
    # On a model without padding in its first layer, Quantus' shifted model (the bias moved
    # by the kernel's response to the shift) is exact, as camkit's is. But Quantus 0.6.0
    # shifts every value of an input except its first (perturb_batch passes indices[i][1:]):
    # fed that input, camkit agrees with it image by image; on the input shifted whole,
    # Grad-CAM (its layer sees the same activations) is invariant and FullGrad, which
    # multiplies the input by its gradient, is not.
    c = _tiny_case()
    explainer_of = lambda net: method_class(method)(net, layer)  # noqa: E731
    maps = explainer_of(c["model"])(c["x"], c["labels"]).maps[:, 0]
    moved = explainer_of(shifted_model(c["model"], -1.0))
    explain = lambda i, t: moved(i, t).maps[:, 0]  # noqa: E731
    ours = input_invariance(explain, c["x"], maps, c["labels"])
    assert ours.tolist() == [float(invariant)] * 6

    def explain_func(
        model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object
    ) -> np.ndarray:
        done = explainer_of(model)(torch.as_tensor(inputs).float(), torch.as_tensor(targets))
        return done.maps.double().numpy()

    metric = quantus.InputInvariance(disable_warnings=True)
    theirs = metric(
        model=c["model"],
        x_batch=c["x"].numpy(),
        y_batch=c["labels"].numpy(),
        a_batch=maps[:, None].double().numpy(),
        explain_func=explain_func,
    )
    as_quantus = c["x"].clone()
    as_quantus[:, 0, 0, 0] += 1.0  # after the shift of -1: Quantus' input, first value kept
    same_input = input_invariance(explain, as_quantus, maps, c["labels"])
    theirs_ = torch.tensor(np.asarray(theirs, dtype=np.float64))
    assert compared(f"InputInvariance ({method}), Quantus' input", same_input, theirs_) == 0


def test_quantus_non_sensitivity_and_input_invariance_fail_where_camkit_does_not() -> None:
    # NonSensitivity compares one flag a step with one flag a value: more than one value a step
    # breaks the broadcast. InputInvariance shifts the bias of the model's first named module:
    # on the bundled model that is a block (a Sequential), which has no out_channels.
    c = _tiny_case()
    metric = quantus.NonSensitivity(features_in_step=2, normalise=False, disable_warnings=True)
    with pytest.raises(ValueError, match="broadcast"):
        metric(
            model=c["model"],
            x_batch=c["x"].numpy(),
            y_batch=c["labels"].numpy(),
            a_batch=c["maps"][:, None].double().numpy(),
        )
    bundled = case()
    explainer = camkit.GradCAM(bundled["model"])

    def explain_func(
        model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object
    ) -> np.ndarray:
        done = explainer(torch.as_tensor(inputs).float(), torch.as_tensor(targets))
        return done.maps.double().numpy()

    with pytest.raises(AttributeError, match="out_channels"):
        quantus.InputInvariance(disable_warnings=True)(
            model=bundled["model"],
            x_batch=bundled["x"][:2].numpy(),
            y_batch=bundled["labels"][:2].numpy(),
            a_batch=bundled["maps"][:2, None].double().numpy(),
            explain_func=explain_func,
        )
    moved = shifted_model(bundled["model"], -1.0)  # camkit's: any model
    assert torch.allclose(
        moved(bundled["x"][:2] - 1), bundled["model"](bundled["x"][:2]), atol=1e-5
    )
