"""Speed and memory of the whole CAM family against its limits, grad-cam and torchcam.

Usage:
    python -m pip install -e ".[bench]"
    python benchmarks/bench_family.py [--rounds 3]

Two tables, each timed in one process with interleaved rounds (median), as ratios to a limit:

1. Gradient rules and EigenCAM on resnet50 (random weights), batch 8, 224 x 224, layer4. The
   limit is the one of bench_core.py: one forward pass plus `torch.autograd.grad` of the
   predicted class's score with respect to layer4. Smooth Grad-CAM++ runs 4 noisy copies.
2. Forward-only methods on resnet18, batch 2, 224 x 224, layer4 (512 channels). Their limit is
   the forward passes Score-CAM's definition needs: one per (image, channel), 1024 inputs, run
   as plain batches of 64 under `torch.inference_mode`. Ablation-CAM's definition needs as many
   passes, but camkit runs only the part of the network after the layer on ablated copies.

Peak memory of the forward-only methods (CPU: peak resident set in a fresh subprocess, as in
bench_core.py) is measured at two memory caps (masked inputs per pass) to show it follows the
cap. The top-64 Score-CAM's maps are compared with the full method's.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch
import torchvision
from common import cpu_peak_mib, goal, interleaved, layer4_limit, peak_in_subprocess
from torch import Tensor, nn

import camkit

Case = Callable[[nn.Module, Tensor], Callable[[], object]]


def masked_passes(
    model: nn.Module, x: Tensor, channels: int = 512, batch: int = 64
) -> Callable[[], object]:
    """Score-CAM's limit: B x C forward passes as plain batches (inputs prepared beforehand)."""
    chunk = x[:1].expand(batch, *x.shape[1:]).contiguous()

    def run() -> object:
        with torch.inference_mode():
            return [model(chunk) for _ in range(x.shape[0] * channels // batch)]

    return run


def ours(method: str, **options: object) -> Case:
    def build(model: nn.Module, x: Tensor) -> Callable[[], object]:
        explainer = camkit.METHODS[method](model, layer="layer4", **options)
        return lambda: explainer(x)

    return build


def grad_cam_lib(name: str, **options: object) -> Case:
    def build(model: nn.Module, x: Tensor) -> Callable[[], object]:
        import pytorch_grad_cam

        cls = getattr(pytorch_grad_cam, name)

        def run() -> object:
            with cls(model=model, target_layers=[model.layer4]) as cam:
                for key, value in options.items():
                    setattr(cam, key, value)
                return cam(input_tensor=x, targets=None)

        return run

    return build


def torchcam_lib(name: str, **options: object) -> Case:
    def build(model: nn.Module, x: Tensor) -> Callable[[], object]:
        from torchcam import methods

        cls = getattr(methods, name)

        def run() -> object:
            with cls(model, target_layer="layer4", input_shape=tuple(x.shape[1:]), **options) as ex:
                out = model(x)
                return ex(out.argmax(dim=1).tolist(), out)

        return run

    return build


GRADIENT: dict[str, Case] = {
    "limit: forward + autograd.grad to layer4": layer4_limit,
    "camkit Grad-CAM": ours("gradcam"),
    "camkit HiResCAM": ours("hirescam"),
    "camkit Grad-CAM element-wise": ours("gradcam-elementwise"),
    "camkit XGrad-CAM": ours("xgradcam"),
    "camkit LayerCAM": ours("layercam"),
    "camkit EigenGradCAM": ours("eigengradcam"),
    "camkit EigenCAM": ours("eigencam"),
    "camkit Smooth Grad-CAM++ (4 copies)": ours("smoothgradcam++", copies=4),
    "grad-cam HiResCAM": grad_cam_lib("HiResCAM"),
    "grad-cam GradCAMElementWise": grad_cam_lib("GradCAMElementWise"),
    "grad-cam XGradCAM": grad_cam_lib("XGradCAM"),
    "grad-cam LayerCAM": grad_cam_lib("LayerCAM"),
    "grad-cam EigenGradCAM": grad_cam_lib("EigenGradCAM"),
    "grad-cam EigenCAM": grad_cam_lib("EigenCAM"),
    "torchcam XGradCAM": torchcam_lib("XGradCAM"),
    "torchcam LayerCAM": torchcam_lib("LayerCAM"),
    "torchcam SmoothGradCAMpp (4 samples)": torchcam_lib("SmoothGradCAMpp", num_samples=4),
}
LIMIT = "limit: forward + autograd.grad to layer4"

FORWARD_ONLY: dict[str, Case] = {
    "limit: 1024 masked passes, batches of 64": masked_passes,
    "camkit Score-CAM (batch 64)": ours("scorecam", rows_per_pass=64),
    "camkit Score-CAM top-64 channels": ours("scorecam", rows_per_pass=64, channels=64),
    "camkit Ablation-CAM (batch 1024)": ours("ablationcam", rows_per_pass=1024),
    "grad-cam ScoreCAM (batch 64)": grad_cam_lib("ScoreCAM", batch_size=64),
    "grad-cam AblationCAM (batch 64)": grad_cam_lib("AblationCAM", batch_size=64),
    "torchcam ScoreCAM (batch 64)": torchcam_lib("ScoreCAM", batch_size=64),
}
MASKED = "limit: 1024 masked passes, batches of 64"
MEMORY = {
    "camkit Score-CAM (batch 16)": ours("scorecam", rows_per_pass=16),
    "camkit Score-CAM (batch 64)": ours("scorecam", rows_per_pass=64),
    "camkit Ablation-CAM (batch 256)": ours("ablationcam", rows_per_pass=256),
    "camkit Ablation-CAM (batch 1024)": ours("ablationcam", rows_per_pass=1024),
    "grad-cam ScoreCAM (batch 64)": grad_cam_lib("ScoreCAM", batch_size=64),
    "torchcam ScoreCAM (batch 64)": torchcam_lib("ScoreCAM", batch_size=64),
}


def setting(table: str) -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    if table == "gradient":
        return torchvision.models.resnet50().eval(), torch.randn(8, 3, 224, 224)
    return torchvision.models.resnet18().eval(), torch.randn(2, 3, 224, 224)


def timed(cases: dict[str, Case], table: str, rounds: int) -> dict[str, float]:
    model, x = setting(table)
    return interleaved({name: build(model, x) for name, build in cases.items()}, rounds)


def peak_mib(case: str) -> float:
    """Peak resident memory a (warmed-up) call adds, in a fresh subprocess."""
    return peak_in_subprocess(__file__, ["--memory-case", case])


def measure_memory(case: str) -> None:
    model, x = setting("forward-only")
    print(cpu_peak_mib(MEMORY[case](model, x)))


def top_channel_difference() -> tuple[float, float]:
    model, x = setting("forward-only")
    full = camkit.ScoreCAM(model, layer="layer4")(x).maps.flatten(1)
    top = camkit.ScoreCAM(model, layer="layer4", channels=64)(x).maps.flatten(1)
    correlation = torch.corrcoef(torch.stack([full.flatten(), top.flatten()]))[0, 1]
    return float((full - top).abs().mean()), float(correlation)


def table(title: str, medians: dict[str, float], reference: str) -> None:
    print(f"\n{title}\n")
    print("| case | median s | x limit |")
    print("|---|---:|---:|")
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} | {value / medians[reference]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.memory_case:
        measure_memory(args.memory_case)
        return
    threads, version = torch.get_num_threads(), torch.__version__
    print(f"CPU, {threads} threads, torch {version}, median of {args.rounds} interleaved rounds")
    gradient = timed(GRADIENT, "gradient", args.rounds)
    table("resnet50, batch 8, 224 x 224, layer4:", gradient, LIMIT)
    forward = timed(FORWARD_ONLY, "forward-only", args.rounds)
    table("resnet18, batch 2, 224 x 224, layer4 (512 channels):", forward, MASKED)
    print("\nPeak memory of one call above its start (MiB):\n")
    print("| case | peak MiB |")
    print("|---|---:|")
    for case in MEMORY:
        print(f"| {case} | {peak_mib(case):.0f} |")
    difference, correlation = top_channel_difference()
    print(
        f"\nScore-CAM with the top 64 of 512 channels vs all: mean |difference| of the "
        f"normalised maps {difference:.3f}, correlation {correlation:.3f}"
    )

    print("\nGoals:")
    for name in GRADIENT:
        if name.startswith("camkit") and "Smooth" not in name:
            goal(f"{name} / limit", gradient[name] / gradient[LIMIT], 1.15)
    goal(
        "camkit Smooth Grad-CAM++ (4 copies) / limit",
        gradient["camkit Smooth Grad-CAM++ (4 copies)"] / gradient[LIMIT],
        4.3,
    )
    for name in ("camkit Score-CAM (batch 64)", "camkit Ablation-CAM (batch 1024)"):
        goal(f"{name} / masked-pass limit", forward[name] / forward[MASKED], 1.1)
    goal(
        "Score-CAM speed-up with 64 of 512 channels (ideal 8)",
        forward["camkit Score-CAM (batch 64)"] / forward["camkit Score-CAM top-64 channels"],
        6.0,
        at_least=True,
    )
    for theirs in ("grad-cam ScoreCAM (batch 64)", "torchcam ScoreCAM (batch 64)"):
        goal(
            f"{theirs} / camkit Score-CAM (batch 64)",
            forward[theirs] / forward["camkit Score-CAM (batch 64)"],
            1.0,
            at_least=True,
        )
    goal(
        "grad-cam AblationCAM / camkit Ablation-CAM",
        forward["grad-cam AblationCAM (batch 64)"] / forward["camkit Ablation-CAM (batch 1024)"],
        1.0,
        at_least=True,
    )


if __name__ == "__main__":
    main()
