"""camkit's metrics against Quantus 0.6.0 on the same work, and against the passes they need.

Usage:
    python -m pip install -e ".[test]"   # Quantus is a test dependency
    python benchmarks/bench_quantus.py [--images 64] [--rounds 3]

The bundled model, the first `--images` images of its benchmark with their masks, Grad-CAM's
maps of the labels (made once, outside the timings). For each metric both libraries score the
same maps; one process, rounds interleaved, median. A metric that runs the model
(faithfulness correlation, 100 subsets of 224 pixels) is also timed against its limit: the
same number of forward passes as plain batches of the same size, without gradients, in
channels-last (the layout the bundled model runs fastest in on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import quantus
import torch
from common import goal

import camkit
from camkit.data import ShapesDataset
from camkit.metrics import complexity, localisation
from camkit.metrics.faithfulness import faithfulness_correlation
from camkit.models import load_shapes_model

Case = Callable[[], object]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    model = load_shapes_model()
    data = ShapesDataset(args.images, seed=3).stack()
    x, labels, masks = data["image"], data["label"], data["mask"]
    maps = camkit.GradCAM(model)(x, labels).maps[:, 0]
    numpy = {"model": model, "x_batch": x.numpy(), "y_batch": labels.numpy(),
             "a_batch": maps[:, None].double().numpy()}  # fmt: skip
    segments = masks[:, None].double().numpy()

    def theirs(metric: object, masked: bool = False) -> Case:
        more = {"s_batch": segments} if masked else {}
        return lambda: metric(**numpy, **more)  # type: ignore[operator]

    quiet = {"disable_warnings": True}
    cases: dict[str, tuple[Case, Case]] = {
        "Sparseness": (lambda: complexity.sparseness(maps), theirs(quantus.Sparseness(**quiet))),
        "Complexity": (lambda: complexity.complexity(maps), theirs(quantus.Complexity(**quiet))),
        "EffectiveComplexity": (lambda: complexity.effective_complexity(maps),
                                theirs(quantus.EffectiveComplexity(**quiet))),
        "RelevanceMassAccuracy": (lambda: localisation.relevance_mass(maps, masks),
                                  theirs(quantus.RelevanceMassAccuracy(**quiet), True)),
        "RelevanceRankAccuracy": (lambda: localisation.relevance_rank(maps, masks),
                                  theirs(quantus.RelevanceRankAccuracy(**quiet), True)),
        "TopKIntersection": (lambda: localisation.top_k_intersection(maps, masks),
                             theirs(quantus.TopKIntersection(**quiet), True)),
        "AUC": (lambda: localisation.roc_auc(maps, masks), theirs(quantus.AUC(**quiet), True)),
        "PointingGame": (lambda: localisation.pointing_game(maps, masks, tolerance=0),
                         theirs(quantus.PointingGame(**quiet), True)),
        "FaithfulnessCorrelation (100 x 224 px)": (
            lambda: faithfulness_correlation(model, x, maps, labels, fill=0.0,
                                             generator=torch.Generator().manual_seed(0)),
            theirs(quantus.FaithfulnessCorrelation(perturb_baseline=0.0, **quiet)),
        ),
    }  # fmt: skip

    fast = x.contiguous(memory_format=torch.channels_last)  # this CPU's fastest layout

    def limit() -> None:  # faithfulness correlation's passes: 100 of each image, no graph
        with torch.no_grad():
            for _ in range(100):
                model(fast)

    times: dict[str, list[float]] = {name: [] for name in [*cases, "limit"]}
    quantus_times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (ours, reference) in cases.items():
            times[name].append(_timed(ours))
            quantus_times[name].append(_timed(reference))
        times["limit"].append(_timed(limit))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"bundled model, {args.images} images of 96 x 96, Grad-CAM maps; CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, Quantus "
          f"{quantus.__version__}; median of {args.rounds} interleaved rounds\n")  # fmt: skip
    print("| Quantus metric | camkit s | Quantus s | Quantus / camkit |\n|---|---:|---:|---:|")
    for name in cases:
        theirs_s = statistics.median(quantus_times[name])
        print(f"| {name} | {median[name]:.4f} | {theirs_s:.4f} | {theirs_s / median[name]:.1f} |")
    fc = "FaithfulnessCorrelation (100 x 224 px)"
    print(f"\nlimit of faithfulness correlation (100 forward passes of the {args.images} images, "
          f"no graph): {median['limit']:.3f} s\n")  # fmt: skip
    goal("faithfulness correlation / its passes", median[fc] / median["limit"], 1.2)
    goal("Quantus / camkit, faithfulness correlation", statistics.median(quantus_times[fc])
         / median[fc], 10.0, at_least=True)  # fmt: skip


def _timed(run: Case) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
