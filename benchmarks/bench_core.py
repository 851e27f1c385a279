"""Speed and peak memory of CAM, Grad-CAM and Grad-CAM++: camkit, the limit, grad-cam, torchcam.

Usage:
    python -m pip install -e ".[bench]"
    python benchmarks/bench_core.py [--rounds 5] [--batch 8] [--device cpu|cuda]

Every case runs in one process, interleaved round by round, and is reported as a ratio to the
limit: one forward pass plus `torch.autograd.grad` of the target scores with respect to the
layer's output. Peak memory on the CPU is measured in a fresh subprocess per case (peak resident
set size above the resident size before the call, with glibc's mmap threshold fixed so freed
tensors return to the system); on CUDA with `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from common import cpu_peak_mib, goal, layer4_limit, peak_in_subprocess
from torch import Tensor, nn

import camkit


@dataclass
class Setup:
    model: nn.Module
    x: Tensor
    top5: Tensor  # each image's five best classes, for the one-call-per-class libraries


def make_setup(batch: int, device: str) -> Setup:
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval().to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    with torch.inference_mode():
        top5 = model(x).topk(5).indices
    return Setup(model, x, top5.clone())


def limit(s: Setup) -> Callable[[], object]:
    return layer4_limit(s.model, s.x)


def forward_no_grad(s: Setup) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return s.model(s.x)

    return run


def camkit_case(method: str, targets: object = None) -> Callable[[Setup], Callable[[], object]]:
    def build(s: Setup) -> Callable[[], object]:
        explainer = camkit.METHODS[method](s.model, layer="layer4")
        return lambda: explainer(s.x, targets)

    return build


def gradcam_lib_case(name: str, top5: bool = False) -> Callable[[Setup], Callable[[], object]]:
    def build(s: Setup) -> Callable[[], object]:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cls = getattr(pytorch_grad_cam, name)
        layers = [s.model.layer4[-1]]

        def run() -> object:
            with cls(model=s.model, target_layers=layers) as cam:
                if not top5:
                    return cam(input_tensor=s.x, targets=None)
                # One pass per class: the library explains one target per image per call.
                return [
                    cam(input_tensor=s.x, targets=[ClassifierOutputTarget(int(c)) for c in column])
                    for column in s.top5.T
                ]

        return run

    return build


def torchcam_case(name: str) -> Callable[[Setup], Callable[[], object]]:
    def build(s: Setup) -> Callable[[], object]:
        from torchcam import methods

        cls = getattr(methods, name)
        options = {"fc_layer": "fc"} if name == "CAM" else {}

        def run() -> object:
            with cls(s.model, target_layer="layer4", **options) as extractor:
                if name == "CAM":
                    with torch.inference_mode():
                        out = s.model(s.x)
                    return extractor(out.argmax(dim=1).tolist())
                out = s.model(s.x)
                return extractor(out.argmax(dim=1).tolist(), out)

        return run

    return build


CASES: dict[str, Callable[[Setup], Callable[[], object]]] = {
    "limit: forward + autograd.grad to layer4": limit,
    "forward without gradients": forward_no_grad,
    "camkit CAM": camkit_case("cam"),
    "camkit Grad-CAM": camkit_case("gradcam"),
    "camkit Grad-CAM++": camkit_case("gradcam++"),
    "camkit Grad-CAM TopK(5)": camkit_case("gradcam", camkit.TopK(5)),
    "grad-cam GradCAM": gradcam_lib_case("GradCAM"),
    "grad-cam GradCAMPlusPlus": gradcam_lib_case("GradCAMPlusPlus"),
    "grad-cam GradCAM top-5 (5 calls)": gradcam_lib_case("GradCAM", top5=True),
    "torchcam CAM": torchcam_case("CAM"),
    "torchcam GradCAM": torchcam_case("GradCAM"),
    "torchcam GradCAMpp": torchcam_case("GradCAMpp"),
}
LIMIT, FORWARD = "limit: forward + autograd.grad to layer4", "forward without gradients"


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_mib(case: str, setup: Setup, device: str) -> float:
    """Peak memory a call adds above what was allocated before it, in MiB (call warmed up first)."""
    run = CASES[case](setup)
    if not device.startswith("cuda"):
        return cpu_peak_mib(run)
    run()
    synchronise(device)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    run()
    synchronise(device)
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the other libraries' deprecation notices

    setup = make_setup(args.batch, args.device)
    if args.memory_case:
        print(peak_memory_mib(args.memory_case, setup, args.device))
        return

    runs = {name: build(setup) for name, build in CASES.items()}
    for run in runs.values():  # warm-up: one-time allocations, kernel selection
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            synchronise(args.device)
            start = time.perf_counter()
            run()
            synchronise(args.device)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    if args.device.startswith("cuda"):
        peak = {name: peak_memory_mib(name, setup, args.device) for name in runs}
    else:
        peak = {
            name: peak_in_subprocess(__file__, ["--memory-case", name, "--batch", str(args.batch)])
            for name in runs
        }

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"resnet50 (random weights), batch {args.batch}, 224 x 224, layer4, {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"median of {args.rounds} interleaved rounds\n"
    )
    print("| case | median s | x limit | x forward | peak MiB | peak x limit |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in runs:
        print(
            f"| {name} | {median[name]:.3f} | {median[name] / median[LIMIT]:.2f} | "
            f"{median[name] / median[FORWARD]:.2f} | {peak[name]:.0f} | "
            f"{peak[name] / peak[LIMIT]:.2f} |"
        )

    print("\nGoals:")
    for method in ("Grad-CAM", "Grad-CAM++"):
        goal(f"camkit {method} / limit", median[f"camkit {method}"] / median[LIMIT], 1.15)
    goal("camkit CAM / forward without gradients", median["camkit CAM"] / median[FORWARD], 1.05)
    goal(
        "camkit TopK(5) / one target",
        median["camkit Grad-CAM TopK(5)"] / median["camkit Grad-CAM"],
        1.4,
    )
    for theirs, ours in (("GradCAM", "Grad-CAM"), ("GradCAMPlusPlus", "Grad-CAM++")):
        speedup = median[f"grad-cam {theirs}"] / median[f"camkit {ours}"]
        goal(f"speed-up over grad-cam {theirs}", speedup, 3.0, at_least=True)
    for method in ("CAM", "Grad-CAM", "Grad-CAM++", "Grad-CAM TopK(5)"):
        goal(f"camkit {method} peak memory / limit's", peak[f"camkit {method}"] / peak[LIMIT], 1.3)


if __name__ == "__main__":
    main()
