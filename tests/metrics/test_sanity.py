"""Spearman, SSIM and cascading randomisation: hand values, and a method that must fail."""

from __future__ import annotations

import warnings

import pytest
import torch

import camkit
from camkit.errors import CamkitWarning
from camkit.metrics import Sanity, cascade_steps, cascading_randomisation, spearman, ssim
from helpers.nets import gap_net
from helpers.quantus_case import compared

C1, C2 = 0.01**2, 0.03**2


def test_spearman_by_hand() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 3.0, 2.0, 4.0], [0.0, 1.0, 1.0, 2.0], [4.0, 3.0, 2.0, 1.0]])
    # 1 - 6 * 2 / (4 * 15) = 0.8; with ties: ranks (.5, .5, 2, 3) and (0, 1.5, 1.5, 3) -> 3.75/4.5
    assert spearman(a, b).tolist() == pytest.approx([0.8, 3.75 / 4.5, -1.0])


def test_spearman_of_a_constant_map_is_zero_and_maps_may_be_volumes() -> None:
    assert spearman(torch.zeros(1, 2, 3), torch.rand(1, 2, 3)).tolist() == [0.0]
    volume = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    assert spearman(volume, 2 * volume + 1).tolist() == pytest.approx([1.0, 1.0])


def test_ssim_by_hand() -> None:
    # Constant maps 1 and 0: (2 * 1 * 0 + C1) / (1 + 0 + C1) times C2 / C2.
    assert ssim(torch.ones(1, 5, 5), torch.zeros(1, 5, 5)).item() == pytest.approx(C1 / (1 + C1))
    # A uniform 2x2 window on opposite checkerboards: means .5, variances .25, covariance -.25.
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    expected = (2 * 0.25 + C1) * (-0.5 + C2) / ((0.5 + C1) * (0.5 + C2))
    assert ssim(x, 1 - x, window=2, sigma=None).item() == pytest.approx(expected)
    maps = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert ssim(maps, maps).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert ssim(maps[:, 0], maps[:, 0]).tolist() == pytest.approx([1.0, 1.0, 1.0])  # 1-D


def test_ssim_averages_the_windows() -> None:
    # A 3-wide uniform window on a 1-D map of 4: two positions, each computed by hand.
    x = torch.tensor([[0.0, 0.0, 0.0, 3.0]])
    y = torch.zeros(1, 4)

    def index(mean_x: float, var_x: float) -> float:
        return (C1 / (mean_x**2 + C1)) * (C2 / (var_x + C2))

    expected = (index(0.0, 0.0) + index(1.0, 2.0)) / 2  # window (0, 0, 3): mean 1, variance 2
    assert ssim(x, y, window=3, sigma=None).item() == pytest.approx(expected)


def test_cascade_steps_go_from_the_output_down() -> None:
    assert cascade_steps(gap_net()) == ["6", "2", "0"]
    from camkit.models import ShapesNet

    steps = cascade_steps(ShapesNet())
    assert steps[0] == "classifier"
    assert steps[-1] == "features.0"
    assert len(steps) == 8


class InputPicture(camkit.Explainer):
    """A 'method' that shows the input's brightness: it ignores the model entirely."""

    needs_gradients = False

    def weigh(self, evidence: camkit.Evidence) -> torch.Tensor:
        targets = evidence.scores.shape[1]
        return evidence.inputs.mean(dim=1, keepdim=True).expand(-1, targets, -1, -1)


def test_a_map_of_the_input_fails_and_grad_cam_passes(images) -> None:
    model = gap_net(seed=3)
    control = cascading_randomisation(model, images, InputPicture, targets=[0, 1, 2], layer="0")
    assert control.steps == ["6", "2", "0"]
    assert torch.allclose(control.spearman, torch.ones(3, 3))  # unchanged by any randomisation
    assert torch.allclose(control.ssim, torch.ones(3, 3))
    gradcam = cascading_randomisation(model, images, "gradcam", targets=[0, 1, 2])
    assert bool((gradcam.mean_spearman < 0.9).all())


def test_the_model_and_the_global_random_state_are_untouched(images) -> None:
    model = gap_net(seed=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    first = cascading_randomisation(model, images, "gradcam", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = cascading_randomisation(model, images, "gradcam", seed=7)
    assert torch.equal(first.spearman, again.spearman)
    other = cascading_randomisation(model, images, "gradcam", seed=8)
    assert not torch.equal(first.spearman, other.spearman)


def test_the_original_explanation_fixes_layer_and_targets(images) -> None:
    model = gap_net(seed=5)
    original = camkit.GradCAM(model, layer="1")(images, targets=[4, 3, 2])
    result = cascading_randomisation(model, images, "gradcam", original=original, steps=["6"])
    assert result.steps == ["6"]
    assert result.spearman.shape == (1, 3)
    with pytest.raises(ValueError, match="give the targets they explain"):
        cascading_randomisation(model, images, "gradcam", original=original.maps)
    with pytest.raises(ValueError, match="no module named 'head'"):
        cascading_randomisation(model, images, "gradcam", steps=["head"])
    with pytest.raises(ValueError, match=r"unknown method 'gradcam\+\+\+'"):
        cascading_randomisation(model, images, "gradcam+++")


def test_summary_means() -> None:
    result = Sanity(["a", "b"], torch.tensor([[0.5, 0.7], [0.1, 0.3]]), torch.ones(2, 2))
    assert result.mean_spearman.tolist() == pytest.approx([0.6, 0.2])
    assert result.mean_ssim.tolist() == [1.0, 1.0]


def test_ssim_equals_the_windowed_convolution_of_the_paper() -> None:
    # The separable shifted sums against a plain 11 x 11 (and 3-D 5 x 5 x 5) Gaussian
    # convolution in float64: the same numbers, computed the direct way.
    import torch.nn.functional as F

    def direct(a: torch.Tensor, b: torch.Tensor, width: int, sigma: float) -> torch.Tensor:
        offsets = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
        weights = torch.exp(-(offsets**2) / (2 * sigma**2))
        weights = weights / weights.sum()
        dims, kernel = a.dim() - 1, weights
        for _ in range(dims - 1):
            kernel = kernel[..., None] * weights
        conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]

        def mean(t: torch.Tensor) -> torch.Tensor:
            return conv(t[:, None].double(), kernel[None, None])[:, 0]

        mx, my = mean(a), mean(b)
        vx, vy, cov = mean(a * a) - mx**2, mean(b * b) - my**2, mean(a * b) - mx * my
        index = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
        return index.flatten(1).mean(dim=1).float()

    generator = torch.Generator().manual_seed(3)
    a, b = torch.rand(4, 40, 33, generator=generator), torch.rand(4, 40, 33, generator=generator)
    assert torch.allclose(ssim(a, b), direct(a, b, 11, 1.5), atol=1e-7)
    v, w = torch.rand(2, 6, 7, 8, generator=generator), torch.rand(2, 6, 7, 8, generator=generator)
    assert torch.allclose(ssim(v, w, window=5), direct(v, w, 5, 1.5), atol=1e-7)


def test_random_logit_other_classes_and_a_class_blind_map() -> None:
    from camkit.metrics.sanity import other_classes, random_logit

    targets = torch.tensor([0, 1, 2, 3] * 50)
    picked = other_classes(targets, 4, torch.Generator().manual_seed(0))
    assert bool((picked != targets).all())
    assert sorted(picked[targets == 0].unique().tolist()) == [1, 2, 3]  # each other class drawn
    with pytest.raises(ValueError, match="at least 2 classes"):
        other_classes(targets, 1)

    def blind(inputs: torch.Tensor, _classes: torch.Tensor) -> torch.Tensor:
        return inputs[:, 0]

    def opposite(inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return 1 - inputs[:, 0]  # every other class's map is the first's negative

    x = torch.rand(3, 1, 12, 12)
    classes, others = torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long)
    assert random_logit(blind, x[:, 0], x, classes, others).tolist() == [1.0, 1.0, 1.0]
    assert (random_logit(opposite, x[:, 0], x, classes, others) < 0).all()


def test_random_logit_equals_quantus_on_the_same_classes() -> None:
    # Quantus measures SSIM along the flattened map (a 1-D signal with a 7-wide window), which
    # camkit does not: with Spearman as the similarity both say the same, class for class
    from unittest import mock

    import numpy as np
    import quantus

    from camkit.metrics.sanity import random_logit, spearman
    from helpers.quantus_case import case, compared

    c = case()
    model, x, labels = c["model"], c["x"], c["labels"]
    explainer = camkit.GradCAM(model)
    maps = explainer(x, labels).maps[:, 0]
    offsets = torch.randint(0, 5, labels.shape, generator=torch.Generator().manual_seed(3))
    others = offsets + (offsets >= labels).long()  # Quantus' choice among the other 5 of 6

    def explain(inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return explainer(inputs, classes).maps[:, 0]

    import warnings

    warnings.simplefilter("ignore", camkit.CamkitWarning)  # an absent class's map may be all 0
    ours = random_logit(explain, maps, x, labels, others, similarity=spearman)

    def explain_func(
        model: torch.nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object
    ) -> np.ndarray:
        return explainer(torch.as_tensor(inputs), torch.as_tensor(targets)).maps.double().numpy()

    def their_spearman(a: np.ndarray, b: np.ndarray, **_: object) -> np.ndarray:
        return quantus.similarity_func.correlation_spearman(a, b, batched=True)

    metric = quantus.RandomLogit(
        num_classes=6, similarity_func=their_spearman, disable_warnings=True
    )
    with (
        mock.patch("numpy.random.randint", return_value=offsets.numpy()),
        np.errstate(all="ignore"),
    ):
        theirs = torch.tensor(
            np.asarray(
                metric(
                    model=model,
                    x_batch=x.numpy(),
                    y_batch=labels.numpy(),
                    a_batch=maps[:, None].double().numpy(),
                    explain_func=explain_func,
                )
            )
        )
    # a constant map (the other class absent): Quantus' Spearman is NaN, camkit's 0 by convention
    known = theirs.isfinite()
    assert ours[~known].tolist() == [0.0] * int((~known).sum())
    assert compared("RandomLogit (Spearman)", ours[known], theirs[known]) < 1e-6


# MPRT against Quantus 0.6.0. Quantus re-initialises each layer after torch.manual_seed(seed +
# 1), camkit draws every step from one seeded stream: with the layers' reset_parameters made
# deterministic (the same values whoever calls it), both randomise to the same model and the
# comparison is of the protocols alone.


def _deterministic_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    def reset(self: torch.nn.Module) -> None:
        if isinstance(self, torch.nn.modules.batchnorm._NormBase):
            self.reset_running_stats()
        with torch.no_grad():
            for parameter in self.parameters(recurse=False):
                ramp = torch.arange(parameter.numel(), dtype=torch.float32)
                parameter.copy_(
                    (0.1 * torch.sin(0.37 * ramp + parameter.numel())).view_as(parameter)
                )

    for layer in (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear):
        monkeypatch.setattr(layer, "reset_parameters", reset)


def _quantus_explain(model: torch.nn.Module, inputs, targets, **_: object):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CamkitWarning)
        done = camkit.GradCAM(model)(torch.as_tensor(inputs), torch.as_tensor(targets))
    return done.maps.double().numpy()


@pytest.mark.parametrize("independent", [False, True])
def test_mprt_equals_quantus_layer_by_layer(
    monkeypatch: pytest.MonkeyPatch, independent: bool
) -> None:
    import numpy as np
    import quantus

    from helpers.quantus_case import case

    _deterministic_reset(monkeypatch)
    c = case()
    model, x, labels = c["model"], c["x"][:6], c["labels"][:6]
    original = camkit.GradCAM(model)(x, labels)
    # Quantus' steps: every module with reset_parameters, from the output down
    steps = [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]
    ours = cascading_randomisation(
        model, x, "gradcam", original=original, steps=steps, independent=independent
    )
    if independent:
        steps = steps[::-1]  # Quantus takes them from the input up
        ours = cascading_randomisation(
            model, x, "gradcam", original=original, steps=steps, independent=True
        )
    metric = quantus.MPRT(
        layer_order="independent" if independent else "top_down", disable_warnings=True
    )
    theirs = metric(
        model=model,
        x_batch=x.numpy(),
        y_batch=labels.numpy(),
        a_batch=original.maps.double().numpy(),
        explain_func=_quantus_explain,
    )
    assert list(theirs)[1:] == steps
    table = torch.tensor(np.array([theirs[name] for name in steps], dtype=np.float64))
    # Quantus' Spearman of a constant map (a randomised model's, often) is NaN; camkit's is 0
    constant = table.isnan()
    assert ours.spearman[constant].eq(0).all()
    difference = float((ours.spearman.double() - table)[~constant].abs().max())
    print(f"MPRT: {int(constant.sum())} of {constant.numel()} maps constant (Quantus NaN)")
    kind = "independent" if independent else "cascading"
    print(
        f"MPRT ({kind}, {len(steps)} layers): camkit against Quantus, largest difference "
        f"{difference:.3g}"
    )
    assert difference < 1e-6
    if not independent:  # the whole model randomised moves the map more than its last layer
        assert float(ours.spearman[-1].mean()) < float(ours.spearman[0].mean())


def test_quantus_average_correlation_counts_the_original_as_a_layer() -> None:
    # MPRT(return_average_correlation=True) skips a layer named "orig", but the original's
    # scores are stored as "original": its self-similarity (1) enters every image's average.
    import quantus

    metric = quantus.MPRT(disable_warnings=True)
    metric.evaluation_scores = {"original": [1.0, 1.0], "a": [0.2, 0.4], "b": [0.0, 0.2]}
    averaged = metric.recompute_average_correlation_per_sample()
    assert averaged == pytest.approx([0.4, 0.5333333])  # the layers alone: 0.1 and 0.3


def test_efficient_mprt_equals_quantus(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import quantus

    from camkit.metrics.sanity import discrete_entropy, efficient_mprt
    from helpers.quantus_case import case

    _deterministic_reset(monkeypatch)
    c = case()
    model, x, labels = c["model"], c["x"][:6], c["labels"][:6]
    original = camkit.GradCAM(model)(x, labels)
    ours = efficient_mprt(model, x, "gradcam", original=original)
    metric = quantus.EfficientMPRT(disable_warnings=True)
    theirs = metric(
        model=model,
        x_batch=x.numpy(),
        y_batch=labels.numpy(),
        a_batch=original.maps.double().numpy(),
        explain_func=_quantus_explain,
    )
    assert compared("EfficientMPRT", ours, torch.tensor(np.asarray(theirs, np.float64))) < 1e-5
    # by hand: a map with two values equally often has entropy log 2
    assert discrete_entropy(torch.tensor([[0.0, 1.0, 0.0, 1.0]])).tolist() == pytest.approx(
        [float(np.log(2))]
    )


def test_smooth_mprt_averages_noisy_maps_and_quantus_ignores_the_explain_func() -> None:
    import quantus

    net = gap_net()
    x = torch.rand(2, 3, 16, 16)
    explainer = camkit.GradCAM(net)
    # one sample: no smoothing; with noise 0, every sample is the clean map
    plain = cascading_randomisation(net, x, "gradcam", [0, 1], seed=3)
    still = cascading_randomisation(net, x, "gradcam", [0, 1], seed=3, noisy_copies=4, noise=0.0)
    assert torch.allclose(plain.spearman, still.spearman, atol=1e-6)
    smoothed = cascading_randomisation(net, x, "gradcam", [0, 1], seed=3, noisy_copies=4)
    assert not torch.allclose(plain.spearman, smoothed.spearman)
    # Quantus' SmoothMPRT explains with quantus.explain (its own methods), whatever
    # explain_func it is given: camkit's methods cannot be checked against it.
    calls: list[int] = []

    def recorded(model: torch.nn.Module, inputs, targets, **_: object):
        calls.append(len(inputs))
        return explainer(torch.as_tensor(inputs), torch.as_tensor(targets)).maps.numpy()

    metric = quantus.SmoothMPRT(nr_samples=2, disable_warnings=True)
    scores = metric(
        model=net,
        x_batch=x.numpy(),
        y_batch=torch.tensor([0, 1]).numpy(),
        a_batch=None,
        explain_func=recorded,
    )
    layers = len(scores) - 1
    print(
        f"Quantus SmoothMPRT: {layers} layers x 2 samples explained, the given explain_func "
        f"called {len(calls)} times"
    )
    assert len(calls) <= 1  # at most the original maps; never a smoothed one
