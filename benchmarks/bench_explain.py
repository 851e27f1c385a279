"""`camkit explain` end to end against the work it cannot avoid, and its memory over 100 and
1,000 images.

Usage:
    python benchmarks/bench_explain.py [--rounds 3]

1. Speed. Each case is a separate process, as a user runs it, interleaved round by round
   (median): the command, and `explain_work.py` (decode, resize and normalise as the command
   does, forward and backward to the layer, batch by batch: no output). Both include Python's
   start and imports. Cases: resnet50 (random weights) on 48 JPEGs of 300 x 400 with Grad-CAM,
   batch 16; the bundled model on 200 images of its benchmark (96 x 96 PNGs), Grad-CAM, batch 8.
2. Memory. Peak resident set (VmHWM) of the command on 100 and on 1,000 bundled-model images.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import goal

HERE = Path(__file__).resolve().parent


def make_photos(folder: Path, count: int) -> None:
    from camkit.overlay import to_pil

    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for i in range(count):
        low = torch.rand(3, 8, 10, generator=generator)
        picture = F.interpolate(low[None], size=(300, 400), mode="bicubic", align_corners=False)[0]
        picture = (picture + 0.05 * torch.rand(3, 300, 400, generator=generator)).clamp(0, 1)
        to_pil(picture).save(folder / f"{i:04d}.jpg", quality=90)


def make_shapes(folder: Path, count: int) -> None:
    from camkit.data import ShapesDataset
    from camkit.overlay import to_pil

    folder.mkdir(parents=True)
    data = ShapesDataset(count, seed=5)
    for i in range(count):
        to_pil(data[i]["image"]).save(folder / f"{i:04d}.png")


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


PEAK = (
    "import sys\nfrom pathlib import Path\nfrom camkit.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "status = Path('/proc/self/status').read_text().splitlines()\n"
    "print(next(line.split()[1] for line in status if line.startswith('VmHWM')))\n"
)


def peak_mib(arguments: list[str], cwd: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PEAK, *arguments],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="camkit-bench-"))
    try:
        make_photos(root / "photos", 48)
        make_shapes(root / "shapes", 200)
        cases = {
            "resnet50, 48 JPEGs 300 x 400, Grad-CAM, batch 16": (
                [
                    "explain",
                    "photos",
                    "--model",
                    "resnet50",
                    "--methods",
                    "gradcam",
                    "--batch-size",
                    "16",
                ],
                ["photos", "resnet50", "16"],
            ),
            "bundled model, 200 PNGs 96 x 96, Grad-CAM, batch 8": (
                ["explain", "shapes", "--methods", "gradcam", "--batch-size", "8"],
                ["shapes", "shapes", "8"],
            ),
        }
        times: dict[str, dict[str, list[float]]] = {c: {"command": [], "work": []} for c in cases}
        for round_ in range(args.rounds):
            for case, (command, work) in cases.items():
                out = root / f"out-{round_}"
                times[case]["command"].append(
                    timed([sys.executable, "-m", "camkit", *command, "--out", str(out)], root)
                )
                times[case]["work"].append(
                    timed([sys.executable, str(HERE / "explain_work.py"), *work], root)
                )
                shutil.rmtree(out, ignore_errors=True)
        print(
            f"{os.cpu_count()} CPU cores, torch {torch.__version__}, median of {args.rounds} "
            "interleaved rounds, each a fresh process (start and imports included)\n"
        )
        print("| case | work s | camkit explain s | ratio |")
        print("|---|---:|---:|---:|")
        ratios = {}
        for case in cases:
            work = statistics.median(times[case]["work"])
            command = statistics.median(times[case]["command"])
            ratios[case] = command / work
            print(f"| {case} | {work:.2f} | {command:.2f} | {command / work:.2f} |")
        make_shapes(root / "shapes1000", 1000)
        hundred = root / "shapes100"
        hundred.mkdir()
        for path in sorted((root / "shapes1000").iterdir())[:100]:
            shutil.copy(path, hundred / path.name)
        peaks = {
            n: peak_mib(["explain", f"shapes{n}", "--out", f"m{n}"], root) for n in (100, 1000)
        }
        print(
            f"\nPeak resident memory of `camkit explain` (bundled model, default methods): "
            f"{peaks[100]:.0f} MiB on 100 images, {peaks[1000]:.0f} MiB on 1,000"
        )
        print("\nGoals:")
        for case, ratio in ratios.items():
            goal(f"{case}: command / work", ratio, 1.25)
        goal("peak memory on 1,000 images / on 100", peaks[1000] / peaks[100], 1.2)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
