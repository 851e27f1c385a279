"""Cost of explaining a detection: camkit Grad-CAM with `camkit.Box` against its limit.

Usage:
    python benchmarks/bench_detection.py [--rounds 5] [--device cpu|cuda]

The limit is what a user writes by hand: one forward pass of the detector with the backbone's
last stage hooked, then `torch.autograd.grad` of the top detection's score with respect to that
stage's output. camkit finds the layer (cached after the first call), matches the given box to
the detections (IoU), and weighs and upsamples the map. Random weights, box_score_thresh=0 so
every image has detections; interleaved rounds, median.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torchvision
from common import goal
from torch import Tensor, nn

import camkit


def limit(model: nn.Module, layer: nn.Module, x: Tensor) -> object:
    kept: dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda m, i, o: kept.__setitem__("A", o))
    try:
        found = model(x)
    finally:
        handle.remove()
    score = torch.stack([d["scores"][0] for d in found]).sum()
    return torch.autograd.grad(score, kept["A"])


def measure(
    model: nn.Module, x: Tensor, box: camkit.Box, rounds: int
) -> tuple[str, float, dict[str, list[float]]]:
    """The layer, the first call's seconds (layer search included), and each case's times."""
    explainer = camkit.GradCAM(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", camkit.CamkitWarning)  # random weights: maybe blank
        started = time.perf_counter()
        layer_name = explainer(x, box).layers[0]
        first = time.perf_counter() - started
        layer = model.get_submodule(layer_name)
        cases = {"limit": lambda: limit(model, layer, x), "camkit": lambda: explainer(x, box)}
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(rounds):
            for key, run in cases.items():
                started = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - started)
    return layer_name, first, times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    builders = {
        "fasterrcnn_mobilenet_v3_large_320_fpn": (
            torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn,
            {},
        ),
        "fasterrcnn_resnet50_fpn (min_size 480)": (
            torchvision.models.detection.fasterrcnn_resnet50_fpn,
            {"min_size": 480},
        ),
    }
    print(
        f"batch 2, 320 x 400 images, {args.device}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, median of {args.rounds} interleaved rounds\n"
    )
    print("| detector | layer | limit s | camkit Grad-CAM s | ratio | first call s |")
    print("|---|---|---:|---:|---:|---:|")
    ratios = []
    for name, (build, options) in builders.items():
        torch.manual_seed(0)
        model = (
            build(
                weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0, **options
            )
            .eval()
            .to(args.device)
        )
        x = torch.rand(2, 3, 320, 400, device=args.device)
        with torch.no_grad():
            found = model(x)
        box = camkit.Box(
            torch.stack([d["boxes"][:1] for d in found]),
            torch.stack([d["labels"][:1] for d in found]),
        )
        layer_name, first, times = measure(model, x, box, args.rounds)
        low, cam = (statistics.median(times[k]) for k in ("limit", "camkit"))
        ratios.append(cam / low)
        print(f"| {name} | {layer_name} | {low:.3f} | {cam:.3f} | {cam / low:.2f} | {first:.3f} |")
    print("\nGoals:")
    for (name, _), ratio in zip(builders.items(), ratios, strict=True):
        goal(f"{name}: camkit Grad-CAM / limit", ratio, 1.2)


if __name__ == "__main__":
    main()
