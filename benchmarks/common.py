"""Pieces both benchmark scripts use: the gradient limit, peak memory, goal lines."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def layer4_limit(model: nn.Module, x: Tensor) -> Callable[[], object]:
    """The least work a gradient method needs: a forward pass and dS/dA for the predicted class."""

    def run() -> object:
        kept: dict[str, Tensor] = {}
        handle = model.layer4.register_forward_hook(lambda m, i, o: kept.__setitem__("A", o))
        try:
            logits = model(x)
        finally:
            handle.remove()
        scores = logits.gather(1, logits.argmax(dim=1, keepdim=True))
        return torch.autograd.grad(scores.sum(), kept["A"])

    return run


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cpu_peak_mib(run: Callable[[], object]) -> float:
    """Peak resident memory one call adds above the resident size before it (warmed up first)."""
    run()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets the peak resident set size (VmHWM)
    run()
    return (_status_kib("VmHWM") - before) / 1024


def peak_in_subprocess(script: str, arguments: Sequence[str]) -> float:
    """Run `script` with `arguments` in a fresh process; it prints the peak as its last line.

    glibc's mmap threshold is fixed so that freed tensors go back to the system.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(
        [sys.executable, script, *arguments], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def interleaved(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each run: one warm-up call each, then `rounds` rounds in which every
    run goes once (so a noisy moment of a shared machine touches all of them alike)."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def goal(text: str, value: float, bound: float, at_least: bool = False) -> None:
    met = value >= bound if at_least else value <= bound
    sign = ">=" if at_least else "<="
    print(f"- {text}: {value:.2f} ({'met' if met else 'NOT met'}, goal {sign} {bound})")
