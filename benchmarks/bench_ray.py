"""`camkit explain` and `camkit evaluate` on Ray (`--ray`) against the same command run locally.

Usage:
    python benchmarks/bench_ray.py [--rounds 1]

Each case is a fresh process, as a user runs it (start, imports and, with `--ray`, starting a
local Ray cluster included): the local run, then `--ray` with 1 and with 2 actors. On a 2-core
machine 2 actors have one core each, the local run both cores (torch threads and reader
processes). The outputs of the runs are compared (files byte for byte; the report's figures).
It also prints the per-image costs that docs/howto/ray.md turns into cluster estimates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from bench_explain import make_photos
from common import goal


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "camkit", *command], cwd=cwd, check=True, capture_output=True
    )
    return time.perf_counter() - started


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def same_figures(a: Path, b: Path) -> bool:
    left, right = (json.loads((f / "results.json").read_text()) for f in (a, b))
    for report in (left, right):
        for row in report["rows"].values():
            row.pop("Explain s")
    return all(left[k] == right[k] for k in ("rows", "curves", "sanity", "win"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=("explain", "evaluate"), help="run one case")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="camkit-bench-ray-"))
    variants = {
        "local": [],
        "--ray, 1 actor": ["--ray", "--ray-workers", "1"],
        "--ray, 2 actors": ["--ray", "--ray-workers", "2"],
    }
    try:
        make_photos(root / "photos", 96)
        # One set of random weights for every run (each process would draw its own).
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet50().state_dict(), root / "resnet50.pt")
        cases = {
            "explain: resnet50, 96 JPEGs 300 x 400, Grad-CAM, batch 16": (
                [
                    "explain",
                    "photos",
                    "--model",
                    "resnet50",
                    "--weights",
                    "resnet50.pt",
                    "--methods",
                    "gradcam",
                    "--batch-size",
                    "16",
                ],
                96,
                same_files,
            ),
            "evaluate: bundled model, 96 images, Grad-CAM, Grad-CAM++, Score-CAM": (
                [
                    "evaluate",
                    "--limit",
                    "96",
                    "--batch-size",
                    "16",
                    "--methods",
                    "gradcam,gradcam++,scorecam",
                ],
                96,
                same_figures,
            ),
        }
        cases = {c: v for c, v in cases.items() if args.only is None or c.startswith(args.only)}
        times = {c: {v: [] for v in variants} for c in cases}
        same = dict.fromkeys(cases, True)
        for round_ in range(args.rounds):
            for case, (command, _, compare) in cases.items():
                outs = {}
                for variant, extra in variants.items():
                    outs[variant] = root / f"out-{round_}-{len(outs)}"
                    run = [*command, *extra, "--out", str(outs[variant])]
                    times[case][variant].append(timed(run, root))
                same[case] &= all(compare(outs["local"], o) for o in outs.values())
                for out in outs.values():
                    shutil.rmtree(out, ignore_errors=True)
        print(
            f"{os.cpu_count()} CPU cores, torch {torch.__version__}, median of {args.rounds} "
            "round(s), each run a fresh process (Ray's cluster start included)\n"
        )
        print(
            "| case | local s | --ray 1 actor s | --ray 2 actors s | 2 actors / local | "
            "same outputs |"
        )
        print("|---|---:|---:|---:|---:|---|")
        ratios = {}
        for case, (_, count, _) in cases.items():
            median = {v: statistics.median(t) for v, t in times[case].items()}
            ratios[case] = median["--ray, 2 actors"] / median["local"]
            print(
                f"| {case} | {median['local']:.1f} | {median['--ray, 1 actor']:.1f} | "
                f"{median['--ray, 2 actors']:.1f} | {ratios[case]:.2f} | "
                f"{'yes' if same[case] else 'NO'} |"
            )
            one, two = median["--ray, 1 actor"], median["--ray, 2 actors"]
            print(f"|   per image, 1 actor | | {one / count:.3f} s | | | |")
            print(f"|   scaling 1 -> 2 actors | | | {one / two:.2f}x | | |")
        print("\nGoals:")
        for case, ratio in ratios.items():
            goal(f"{case}: --ray (2 actors) / local", ratio, 1.0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
