"""How soon the `camkit` command answers: its help, and the first file `camkit explain` writes.

Usage:
    python benchmarks/bench_startup.py [--rounds 5]

Each case is a fresh process, as a user runs it, interleaved round by round (median):

- `python -c pass` and `python -c "import torch"`: the floors (Python alone; what any command
  that touches a model pays first);
- `camkit --help` (goal 0.5 s) and each command's `--help`;
- `camkit explain` on one bundled sample with Grad-CAM: the time until its first output file
  exists in the output folder, and until the command exits.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import goal

CAMKIT = [sys.executable, "-m", "camkit"]
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


def first_file(sample: Path) -> tuple[float, float]:
    """Seconds until `camkit explain` has written its first file, and until it exits."""
    out = Path(tempfile.mkdtemp(prefix="camkit-startup-"))
    try:
        command = [*CAMKIT, "explain", str(sample), "--methods", "gradcam", "--out", str(out)]
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

    sample = sample_images()[0]
    times: dict[str, list[float]] = {name: [] for name in HELP_CASES}
    times["camkit explain, 1 image: first file"] = []
    times["camkit explain, 1 image: exit"] = []
    for _ in range(rounds):
        for name, command in HELP_CASES.items():
            times[name].append(timed(command))
        first, total = first_file(sample)
        times["camkit explain, 1 image: first file"].append(first)
        times["camkit explain, 1 image: exit"].append(total)
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
    print(f"  (a command's options list the method and metric registries, which import torch: "
          f"{torch_floor:.2f} s alone)")  # fmt: skip


if __name__ == "__main__":
    main()
