"""`camkit evaluate` against the model passes its methods and metrics need.

Usage:
    python benchmarks/bench_evaluate.py [--images 50] [--methods default|all|a,b] [--metrics all]

`--command` times `camkit evaluate` with no options end to end (a fresh process).
`--methods default` (the default) is what `camkit evaluate` runs with no options (those of
`DEFAULT_METHODS` that fit the bundled CNN); `--methods all --images 200` is the full run.

One process: `evaluate` runs on the bundled benchmark while a pre-hook records the shape of
every forward pass the model (or the sanity check's randomised copy of it) makes; the report
counts the backward passes. Then the same
passes are timed alone: each recorded batch shape once more through the model without
gradients, and each backward pass as the difference between a forward with the gradient to the
explained layer and one without. The forward passes are replayed as fast as the model runs them
on this machine (on a CPU: channels-last chunks of 2 million input values, the layout camkit's
metrics use; the default layout of 256 images is 2x slower). The ratio is evaluate's time over
that sum; the report's own
per-method and per-metric seconds show where the rest goes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch.nn.modules.module import register_module_forward_pre_hook

from camkit.data import ShapesDataset
from camkit.evaluation import METRICS, Batch, Settings, evaluate
from camkit.jobs.options import DEFAULT_METHODS
from camkit.methods import METHODS
from camkit.methods.building import build
from camkit.metrics._common import CPU_VALUES
from camkit.models import load_shapes_model


def fits(method: str, model: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether the method explains this model (the transformer methods do not fit a CNN)."""
    try:
        build(method, model)(x)
    except (ValueError, TypeError, RuntimeError):
        return False
    return True


def command_end_to_end() -> None:
    """`camkit evaluate` with no options, a fresh process from start to exit (imports, model,
    data, estimate, work, report and plots), against the goal of two minutes."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "camkit", "evaluate", "--out", out],
            check=True,
            capture_output=True,
        )
        took = time.perf_counter() - started
        inside = json.loads((Path(out) / "results.json").read_text())["info"]["seconds"]
    print(
        f"camkit evaluate, no options: {took:.1f} s start to exit ({inside} s in the job), "
        f"{took / 120:.2f}x the two-minute goal"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--methods", default="default")
    parser.add_argument("--metrics", default="all")
    parser.add_argument(
        "--command",
        action="store_true",
        help="time `camkit evaluate` with no options end to end instead",
    )
    args = parser.parse_args()
    if args.command:
        command_end_to_end()
        return
    named = {"all": list(METHODS), "default": list(DEFAULT_METHODS)}
    methods = named.get(args.methods) or args.methods.split(",")
    chosen = list(METRICS) if args.metrics == "all" else args.metrics.split(",")
    model = load_shapes_model()
    data = ShapesDataset(args.images, seed=31337).stack()
    methods = [m for m in methods if fits(m, model, data["image"][:2])]
    batches = [
        Batch(
            data["image"][i : i + args.batch_size],
            data["label"][i : i + args.batch_size],
            data["mask"][i : i + args.batch_size],
        )
        for i in range(0, args.images, args.batch_size)
    ]
    shapes: Counter[tuple[int, ...]] = Counter()
    kind = type(model)  # the model and the sanity check's randomised copies of it

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if type(module) is kind:
            shapes.update([tuple(inputs[0].shape)])

    handle = register_module_forward_pre_hook(record)
    started = time.perf_counter()
    report = evaluate(model, batches, methods, chosen, settings=Settings(sanity_images=16))
    total = time.perf_counter() - started
    handle.remove()
    backward = sum(p["backward"] for m, p in report.info["passes"].items() if m != "clean")
    # The same passes, timed alone.
    started = time.perf_counter()
    with torch.inference_mode():
        for shape, count in shapes.items():
            x = torch.rand(shape)
            rows = max(1, CPU_VALUES // x[0].numel())
            for _ in range(count):
                for i in range(0, shape[0], rows):
                    model(x[i : i + rows].contiguous(memory_format=torch.channels_last))
    forward_alone = time.perf_counter() - started
    x = batches[0].inputs
    layer = model.features
    kept = {}
    hook = layer.register_forward_hook(lambda m, i, o: kept.__setitem__("A", o))
    started = time.perf_counter()
    for _ in range(5):
        logits = model(x)
        torch.autograd.grad(logits.max(dim=1).values.sum(), kept["A"])
    with_grad = (time.perf_counter() - started) / 5
    hook.remove()
    started = time.perf_counter()
    with torch.no_grad():
        for _ in range(5):
            model(x)
    without = (time.perf_counter() - started) / 5
    backward_alone = backward * max(0.0, with_grad - without)
    limit = forward_alone + backward_alone
    calls = sum(shapes.values())
    images = sum(shape[0] * count for shape, count in shapes.items())
    print(
        f"{args.images} images, {len(methods)} methods, metrics {', '.join(chosen)}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(f"- model passes: {calls} forward ({images} images), {backward} backward")
    print(f"- the passes alone: {forward_alone:.1f} s forward + {backward_alone:.1f} s backward")
    print(f"- evaluate: {total:.1f} s, {total / limit:.2f}x its passes\n")
    seconds = report.info["seconds_per_task"]
    tasks = list(next(iter(seconds.values())))
    print("| method | " + " | ".join(f"{t} s" for t in tasks) + " |")
    print("|---|" + "---:|" * len(tasks))
    for method, spent in seconds.items():
        print(f"| {method} | " + " | ".join(f"{spent[t]:.2f}" for t in tasks) + " |")
    by_task = {t: sum(s[t] for s in seconds.values()) for t in tasks}
    print(
        "\nSeconds per task, all methods: " + ", ".join(f"{t} {v:.1f}" for t, v in by_task.items())
    )


if __name__ == "__main__":
    main()
