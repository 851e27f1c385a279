"""Speed of camkit.metrics against their limits and against pytorch-grad-cam's metrics.

Usage:
    python -m pip install -e ".[bench]"
    python benchmarks/bench_metrics.py [--images 32] [--rounds 3]

Setting: the bundled shapes model, N images of 96 x 96, Grad-CAM maps, scores as softmax
probabilities. Every case is timed in one process with interleaved rounds (median). The limit of
a perturbation metric is the forward passes its definition needs, run as plain batches of 256
pre-built inputs under `torch.inference_mode`:

- Average Drop: 1 pass of the masked batch (the clean pass is shared with the explanation).
- Deletion / insertion (16 steps): N x 16 passes (the known end of each curve is reused).
- ROAD, 5 percentages, one order: N x 5 passes; the imputation comes on top of that limit.

pytorch-grad-cam's counterparts: `CamMultImageConfidenceChange` (one masked pass, plus one clean
pass it always makes), and `ROADMostRelevantFirst` per percentage (its imputation is a SciPy
sparse solve per image on the CPU). It has no deletion/insertion metric. Localisation and the
sanity check have no counterpart there; their absolute times are listed.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import Tensor

import camkit
from camkit import metrics
from camkit.data import ShapesDataset
from camkit.models import load_shapes_model

PERCENTAGES = (10, 30, 50, 70, 90)
STEPS = 16


def forward_limit(model: torch.nn.Module, inputs: Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return [model(inputs[i : i + 256]) for i in range(0, inputs.shape[0], 256)]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_shapes_model()
    data = ShapesDataset(args.images, seed=31337).stack()
    x, labels = data["image"], data["label"]
    explanation = camkit.GradCAM(model)(x, labels)
    maps = explanation.maps[:, 0]
    with torch.no_grad():
        base = model(x).softmax(dim=1)
    n = x.shape[0]
    fill = 0.5
    # Pre-built inputs for the limits (built once, outside the timing).
    masked = fill + (x - fill) * maps[:, None]
    steps_inputs = x.repeat_interleave(STEPS, dim=0)
    road_inputs = x.repeat_interleave(len(PERCENTAGES), dim=0)
    cams = maps.numpy()
    softmax_targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in labels]

    def grad_cam_road() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2 vs their wrapper
            return [ROADMostRelevantFirst(p)(x, cams, softmax_targets, model) for p in PERCENTAGES]

    cases: dict[str, dict[str, Callable[[], object]]] = {
        "Average Drop": {
            "limit": forward_limit(model, masked),
            "camkit": lambda: metrics.confidence(model, x, explanation, fill=fill, base=base),
            "grad-cam": lambda: CamMultImageConfidenceChange()(x, cams, softmax_targets, model),
        },
        f"Deletion ({STEPS} steps)": {
            "limit": forward_limit(model, steps_inputs),
            "camkit": lambda: metrics.deletion(
                model, x, explanation, steps=STEPS, fill=fill, base=base
            ),
        },
        f"Insertion ({STEPS} steps)": {
            "limit": forward_limit(model, steps_inputs),
            "camkit": lambda: metrics.insertion(model, x, explanation, steps=STEPS, base=base),
        },
        f"ROAD MoRF ({len(PERCENTAGES)} shares)": {
            "limit": forward_limit(model, road_inputs),
            "camkit": lambda: metrics.road(
                model, x, explanation, percentages=PERCENTAGES, base=base
            ),
            "grad-cam": grad_cam_road,
        },
        "MaxBoxAcc (19 thresholds)": {
            "camkit": lambda: metrics.box_accuracy(
                explanation, data["box"], metrics.default_thresholds()
            ),
        },
        "Pointing + energy": {
            "camkit": lambda: (
                metrics.pointing_game(explanation, data["mask"], tolerance=6.4),
                metrics.energy_pointing_game(explanation, data["box"]),
            ),
        },
        "Sanity (8 steps, Grad-CAM)": {
            "camkit": lambda: metrics.cascading_randomisation(model, x, "gradcam", labels),
        },
    }
    times: dict[tuple[str, str], list[float]] = {}
    for run in [c for case in cases.values() for c in case.values()]:
        run()  # warm up
    for _ in range(args.rounds):
        for case, runners in cases.items():
            for name, run in runners.items():
                started = time.perf_counter()
                run()
                times.setdefault((case, name), []).append(time.perf_counter() - started)
    median = {key: statistics.median(value) for key, value in times.items()}

    print(
        f"## camkit.metrics, {n} images of 96 x 96, bundled model, CPU "
        f"({torch.get_num_threads()} threads), median of {args.rounds}\n"
    )
    print("| Metric | limit s | camkit s | camkit / limit | grad-cam s | grad-cam / camkit |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        limit = median.get((case, "limit"))
        ours = median[(case, "camkit")]
        theirs = median.get((case, "grad-cam"))
        cells = [
            f"{limit:.3f}" if limit else "-",
            f"{ours:.3f}",
            f"{ours / limit:.2f}x" if limit else "-",
            f"{theirs:.3f}" if theirs else "-",
            f"{theirs / ours:.1f}x" if theirs else "-",
        ]
        print(f"| {case} | " + " | ".join(cells) + " |")
    print(
        f"\nPer image: ROAD {1000 * median[(list(cases)[3], 'camkit')] / n:.1f} ms "
        f"(5 imputations and passes), grad-cam "
        f"{1000 * median[(list(cases)[3], 'grad-cam')] / n:.1f} ms."
    )


if __name__ == "__main__":
    main()
