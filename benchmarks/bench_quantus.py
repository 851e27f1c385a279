"""camkit's metrics against Quantus 0.6.0 on the same work, and against the passes they need.

Usage:
    python -m pip install -e ".[test]"   # Quantus is a test dependency
    python benchmarks/bench_quantus.py [--images 64] [--rounds 3] [--only NAME ...]

The bundled model, the first `--images` images of its benchmark with their masks, Grad-CAM's
maps of the labels (made once, outside the timings). For each metric both libraries do the same
work (the protocol the parity tests compare, the same number of passes and explanations); one
process, rounds interleaved, median. A metric's limit is its passes through the model: each
forward pass of the images timed alone (no graph, channels-last: the bundled model's fastest
layout on a CPU) and each explanation as Grad-CAM of the images takes, timed just before the
metric (the load of a shared machine drifts over a run). Rows without a Quantus
time say why.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import quantus
import torch
from common import goal

import camkit
from camkit.data import ShapesDataset
from camkit.metrics import axiomatic, complexity, localisation, robustness, sanity, stepwise
from camkit.metrics.faithfulness import (
    faithfulness_correlation,
    infidelity,
    sensitivity_n,
    subset_sizes,
    sufficiency,
)
from camkit.metrics.superpixels import superpixels
from camkit.models import load_shapes_model

Run = Callable[[], object]


@dataclass
class Row:
    """One metric: camkit's run, Quantus' (None: why not in `note`), and camkit's necessary
    work per image: forward passes and explanations."""

    ours: Run
    theirs: Run | None
    passes: float = 0.0
    explanations: float = 0.0
    note: str = ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="rows whose name starts so")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    np.trapz = np.trapezoid  # type: ignore[attr-defined]  # Quantus 0.6.0 calls it; NumPy 2.4 has not
    rows = _rows(args.images)
    if args.only:
        rows = {k: v for k, v in rows.items() if any(k.startswith(o) for o in args.only)}
    model, x, _, _ = _case(args.images)
    fast = x.contiguous(memory_format=torch.channels_last)
    explainer = camkit.GradCAM(model)

    def forward() -> None:
        with torch.no_grad():
            model(fast)

    def explanation() -> None:
        explainer(x, None)

    ours: dict[str, list[float]] = {name: [] for name in rows}
    theirs: dict[str, list[float]] = {name: [] for name in rows}
    limits: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, row in rows.items():
            # the row's limit timed beside it: a shared machine's load drifts over a run
            one_pass = statistics.median(_timed(forward) for _ in range(3))
            one_explanation = _timed(explanation) if row.explanations else 0.0
            limits[name].append(row.passes * one_pass + row.explanations * one_explanation)
            ours[name].append(_timed(row.ours))
            if row.theirs is not None:
                theirs[name].append(_timed(row.theirs))
    one_pass = statistics.median(_timed(forward) for _ in range(3))
    print(
        f"bundled model, {args.images} images of 96 x 96, Grad-CAM maps; CPU, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, Quantus "
        f"{quantus.__version__}; median of {args.rounds} interleaved rounds; each row's limit "
        f"timed beside it (at the end a forward pass of the images took {one_pass:.3f} s)\n"
    )
    print(
        "| Quantus metric | passes + explanations an image | camkit s | camkit / its passes "
        "| Quantus s | Quantus / camkit |\n|---|---|---:|---:|---:|---:|"
    )
    ratios: dict[str, float] = {}
    for name, row in rows.items():
        mine = statistics.median(ours[name])
        limit = statistics.median(limits[name])
        work = f"{row.passes:g} + {row.explanations:g}" if limit else "none"
        over = f"{mine / limit:.2f}" if limit else "-"
        if row.theirs is None:
            their_s, speed = "-", row.note
        else:
            their = statistics.median(theirs[name])
            ratios[name] = their / mine
            their_s, speed = f"{their:.3f}", f"{their / mine:.1f}"
        print(f"| {name} | {work} | {mine:.4f} | {over} | {their_s} | {speed} |")
    print()
    for name in rows:
        limit = statistics.median(limits[name])
        if limit:
            goal(f"{name} / its passes", statistics.median(ours[name]) / limit, 1.2)
    for name, ratio in ratios.items():
        goal(f"Quantus / camkit, {name}", ratio, 10.0, at_least=True)


_CACHE: dict[int, tuple[Any, ...]] = {}


def _case(images: int) -> tuple[Any, ...]:
    if images not in _CACHE:
        model = load_shapes_model()
        data = ShapesDataset(images, seed=3).stack()
        x, labels, masks = data["image"], data["label"], data["mask"]
        jitter = torch.rand(x.shape[0], *x.shape[2:], generator=torch.Generator().manual_seed(0))
        maps = camkit.GradCAM(model)(x, labels).maps[:, 0] + 1e-4 * jitter  # no ties
        _CACHE[images] = (model, x, labels, masks, maps)
    return _CACHE[images][:4]


def _rows(images: int) -> dict[str, Row]:
    model, x, labels, masks, maps = _CACHE.get(images) or (_case(images), _CACHE[images])[1]
    explainer = camkit.GradCAM(model)

    def explain(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return explainer(inputs, targets).maps[:, 0]

    def explain_func(model: Any, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> np.ndarray:
        return explainer(torch.as_tensor(inputs), torch.as_tensor(targets)).maps.double().numpy()

    numpy = {
        "model": model,
        "x_batch": x.numpy(),
        "y_batch": labels.numpy(),
        "a_batch": maps[:, None].double().numpy(),
    }
    segments = masks[:, None].double().numpy()
    quiet: dict[str, Any] = {"disable_warnings": True}
    pixels = maps[0].numel()
    black = x.amin(dim=(1, 2, 3), keepdim=True)
    seeded = torch.Generator().manual_seed

    def theirs(metric: Any, masked: bool = False, explained: bool = False, **more: Any) -> Run:
        extra = {"s_batch": segments} if masked else {}
        if explained:
            extra["explain_func"] = explain_func
        return lambda: metric(**numpy, **extra, **more)

    # Quantus' features are channel values, a step a divisor of H x W: 48 steps of 576
    step48 = 3 * pixels // 48
    noise = 0.02 + 0.18 * torch.rand(10, *x.shape, generator=seeded(4))
    steps = [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]
    tiles, quadrants = localisation.mosaics(x, labels, seeded(0))
    mosaic_maps = explainer(tiles, labels).maps[:, 0]
    predicted = model(x).argmax(dim=1)
    # IROF: the same superpixels on both sides; Quantus on one channel (it refuses three), a
    # lower bound of what colour would cost it
    gray_x = x.mean(dim=1, keepdim=True)

    class Gray(torch.nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return model(inputs.expand(-1, 3, -1, -1))

    gray = Gray().eval()
    superpixel_labels = superpixels(x, 50)

    def quantus_irof() -> object:
        replay = iter(superpixel_labels.numpy())
        original = quantus.helpers.utils.get_superpixel_segments
        quantus.helpers.utils.get_superpixel_segments = lambda *_, **__: next(replay)
        try:
            return quantus.IROF(
                perturb_baseline=0.0, normalise=False, return_aggregate=False, **quiet
            )(
                model=gray,
                x_batch=gray_x.numpy(),
                y_batch=labels.numpy(),
                a_batch=maps[:, None].double().numpy(),
            )
        finally:
            quantus.helpers.utils.get_superpixel_segments = original

    return {
        # complexity and localisation: maps (and masks) only
        "Sparseness": Row(lambda: complexity.sparseness(maps), theirs(quantus.Sparseness(**quiet))),
        "Complexity": Row(lambda: complexity.complexity(maps), theirs(quantus.Complexity(**quiet))),
        "EffectiveComplexity": Row(
            lambda: complexity.effective_complexity(maps),
            theirs(quantus.EffectiveComplexity(**quiet)),
        ),
        "RelevanceMassAccuracy": Row(
            lambda: localisation.relevance_mass(maps, masks),
            theirs(quantus.RelevanceMassAccuracy(**quiet), True),
        ),
        "RelevanceRankAccuracy": Row(
            lambda: localisation.relevance_rank(maps, masks),
            theirs(quantus.RelevanceRankAccuracy(**quiet), True),
        ),
        "TopKIntersection": Row(
            lambda: localisation.top_k_intersection(maps, masks),
            theirs(quantus.TopKIntersection(**quiet), True),
        ),
        "AUC": Row(lambda: localisation.roc_auc(maps, masks), theirs(quantus.AUC(**quiet), True)),
        "PointingGame": Row(
            lambda: localisation.pointing_game(maps, masks, tolerance=0),
            theirs(quantus.PointingGame(**quiet), True),
        ),
        "Focus (given the mosaics' maps)": Row(
            lambda: localisation.focus(mosaic_maps, quadrants),
            lambda: quantus.Focus(normalise=False, **quiet)(
                model=model,
                x_batch=tiles.numpy(),
                y_batch=labels.numpy(),
                a_batch=mosaic_maps[:, None].double().numpy(),
                custom_batch=quadrants.int().tolist(),
            ),
        ),
        # faithfulness: the model's passes
        "FaithfulnessCorrelation (100 x 224 px)": Row(
            lambda: faithfulness_correlation(model, x, maps, labels, fill=0.0, generator=seeded(0)),
            theirs(quantus.FaithfulnessCorrelation(perturb_baseline=0.0, **quiet)),
            100,
        ),
        "FaithfulnessEstimate (48 groups)": Row(
            lambda: stepwise.faithfulness_estimate(model, x, maps, labels, per_step=pixels // 48),
            theirs(
                quantus.FaithfulnessEstimate(
                    features_in_step=step48, perturb_baseline=0.0, normalise=False, **quiet
                )
            ),
            48 + 1,
        ),
        "Monotonicity (48 groups)": Row(
            lambda: stepwise.monotonicity(model, x, maps, labels, per_step=pixels // 48),
            theirs(
                quantus.Monotonicity(
                    features_in_step=step48, perturb_baseline=0.0, normalise=False, **quiet
                )
            ),
            48,
        ),
        "MonotonicityCorrelation (48 x 3)": Row(
            lambda: stepwise.monotonicity_correlation(
                model, x, maps, labels, per_step=pixels // 48, samples=3, generator=seeded(0)
            ),
            theirs(
                quantus.MonotonicityCorrelation(
                    features_in_step=step48, nr_samples=3, normalise=False, **quiet
                )
            ),
            144 + 1,
        ),
        "RegionPerturbation (100 of 8 px)": Row(
            lambda: stepwise.region_perturbation(
                model, x, maps, labels, patch=8, regions=100, fill=black
            ),
            theirs(
                quantus.RegionPerturbation(
                    patch_size=8, regions_evaluation=100, normalise=False, **quiet
                )
            ),
            100 + 1,
        ),
        "Selectivity (144 of 8 px)": Row(
            lambda: stepwise.selectivity(model, x, maps, labels, patch=8, fill=black),
            theirs(quantus.Selectivity(patch_size=8, normalise=False, **quiet)),
            144 + 1,
        ),
        "SensitivityN (5 sizes x 20)": Row(
            lambda: sensitivity_n(
                model, x, maps, labels, sizes=subset_sizes(pixels), runs=20, generator=seeded(0)
            ),
            None,
            100 + 5,
            note="another protocol (docs/concepts.md)",
        ),
        "IROF (50 superpixels; Quantus on grey)": Row(
            lambda: stepwise.irof(model, x, maps, labels, segments=superpixel_labels),
            quantus_irof,
            50 + 1,
        ),
        "Infidelity (16 perturbations)": Row(
            lambda: infidelity(model, x, maps, labels, samples=16, generator=seeded(0)),
            theirs(quantus.Infidelity(perturb_patch_sizes=[24], n_perturb_samples=1, **quiet)),
            16 + 1,
            note="",
        ),
        "Sufficiency": Row(
            lambda: sufficiency(maps, predicted), theirs(quantus.Sufficiency(**quiet))
        ),
        # robustness: the method explains again
        "RelativeInputStability (10 samples)": Row(
            lambda: robustness.relative_stability(explain, model, x, maps, labels, noise=noise),
            lambda: _replayed(
                noise,
                lambda: theirs(
                    quantus.RelativeInputStability(nr_samples=10, **quiet), explained=True
                )(),
            ),
            10 + 1,
            10,
        ),
        "Continuity (28 steps)": Row(
            lambda: robustness.continuity(explain, x, maps, labels, steps=28, fill=black),
            theirs(quantus.Continuity(nr_steps=28, normalise=False, **quiet), explained=True),
            0,
            28,
        ),
        "Consistency": Row(
            lambda: robustness.consistency(maps, predicted, patch=48),
            theirs(quantus.Consistency(normalise=False, **quiet)),
        ),
        # randomisation
        f"MPRT ({len(steps)} layers)": Row(
            lambda: sanity.cascading_randomisation(
                model, x, "gradcam", labels, steps=steps, original=maps
            ),
            theirs(quantus.MPRT(**quiet), explained=True),
            0,
            len(steps),
        ),
        "EfficientMPRT": Row(
            lambda: sanity.efficient_mprt(model, x, "gradcam", labels, original=maps),
            theirs(quantus.EfficientMPRT(**quiet), explained=True),
            0,
            1,
        ),
        # axiomatic
        "Completeness": Row(
            lambda: axiomatic.completeness(model, x, maps, labels, fill=black),
            theirs(quantus.Completeness(normalise=False, **quiet)),
            2,
        ),
        "NonSensitivity (144 squares)": Row(
            lambda: axiomatic.non_sensitivity(model, x, maps, labels, patch=8, fill=black),
            None,
            144 + 1,
            note="pixels only: 27,648 passes an image",
        ),
    }


def _replayed(noise: torch.Tensor, run: Run) -> object:
    """`run` with NumPy's uniform draws replaced by `noise`, sample by sample."""
    replay = iter([noise[i].flatten(1).double().numpy() for i in range(len(noise))])
    original = np.random.uniform
    np.random.uniform = lambda *_, **__: next(replay)  # type: ignore[assignment]
    try:
        return run()
    finally:
        np.random.uniform = original


def _timed(run: Run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
