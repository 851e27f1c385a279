"""Which metrics can be trusted? Every metric checked against answers known by construction.

Usage:
    python scripts/meta_evaluate_metrics.py [--images 24] [--draws 3] [--out docs/evaluation/meta]

1. The shortcut model (`--model shortcut`) decides by a 6 x 6 colour tag, provably (removing
   the tag flips the prediction, removing the shape does not). On its conflict images a
   faithful map shows the tag, so the known answer for a method is how often its map's peak
   is on the tag (the pointing game with the tag as the object). For each metric: the
   Spearman rank correlation, over the methods, between the metric (turned so that higher is
   better) and that known answer. A metric that ranks the methods as the known answer does
   scores near 1; one that rewards something else near 0 or below.
2. The same model with random weights uses nothing. For each metric: how far the methods stand
   from RandomCAM's figure, on the random model over the trained one (the mean absolute gap).
   A metric of the model's evidence collapses (a ratio well below 1); one that reads only the
   maps (complexity) does not, and need not.
3. MetaQuantus' two criteria (Hedström et al., 2023), for the ranking of the methods:
   resilience, the Spearman correlation over the methods between the metric on the model and
   on a minor perturbation that should change nothing (every weight times 1 + N(0, 0.001), the
   inputs plus N(0, 0.001)): near 1 is resilient; reactivity, one minus that correlation under
   a disruptive perturbation that should change the evidence (weights times 1 + N(0, 0.5)):
   high is reactive. Each over `--draws` perturbations, with their range.

Writes meta.md (the table) and meta.json (every figure) in `--out`, and runs.json as each
evaluation ends: a run stopped part way, or asked for more `--draws`, keeps what was done.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from camkit.errors import CamkitWarning
from camkit.evaluation import METRICS, Batch, Evaluation, Settings, column_specs, evaluate
from camkit.evaluation.datasets import benchmark, to_batch
from camkit.evaluation.report import column_categories
from camkit.files import write_text
from camkit.jobs.cost import duration, evaluation_cost
from camkit.metrics import spearman
from camkit.models import load_shortcut_model

METHODS = (
    "cam",
    "gradcam",
    "gradcam++",
    "layercam",
    "eigencam",
    "fullgrad",
    "guided-backprop",
    "refinecam",
    "sobel",
    "randomcam",
    "gradcam-counterfactual",
)
KNOWN = "Pointing %"  # on the tag: the known answer
# Every metric, at settings that keep the 2 + 2 x draws runs near twenty minutes on 2 cores
# (the script says its estimate before it starts).
SETTINGS = {
    "sensitivity_samples": 4,
    "lipschitz_samples": 4,
    "fc_runs": 20,
    "resamples": 0,
    "order_groups": 8,
    "mc_samples": 2,
    "patch": 24,
    "regions": 16,
    "sn_sizes": 3,
    "sn_runs": 5,
    "irof_segments": 16,
    "infidelity_samples": 4,
    "stability_samples": 2,
    "continuity_steps": 4,
    "smprt_samples": 2,
    "sanity_images": 8,
}


def _spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation over the methods; tied methods (CAM and Grad-CAM are one map on this
    model) share their mean rank."""
    return float(spearman(torch.tensor([a]), torch.tensor([b]))[0])


def _metrics() -> list[str]:
    return list(METRICS)


def _noisy(model: nn.Module, std: float, seed: int) -> nn.Module:
    """The model with every weight times 1 + N(0, std) (MetaQuantus' model perturbation)."""
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in noisy.parameters():
            parameter.mul_(1 + std * torch.randn(parameter.shape, generator=generator))
    return noisy.eval()


def _randomised(model: nn.Module) -> nn.Module:
    """The model with every layer re-initialised (seeded): it has learned nothing."""
    random = copy.deepcopy(model)
    torch.manual_seed(0)
    for module in random.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return random.eval()


def _settings(batch: Batch) -> Settings:
    fill = batch.inputs.mean(dim=(0, 2, 3))  # camkit evaluate's default fill: the mean colour
    return Settings(fill=fill, **SETTINGS)


class _Runs:
    """The evaluations done so far, kept in `runs.json` as each ends: a run stopped part way
    (or asked for more draws) starts where it was, when the images, methods and settings are
    the same; otherwise it starts over."""

    def __init__(self, path: Path, images: int) -> None:
        self.path = path
        self.key = {"images": images, "methods": list(METHODS), "settings": SETTINGS}
        kept: dict[str, Any] = {}
        if path.is_file():
            try:
                kept = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as error:  # not this script's file
                warnings.warn(f"{path}: not readable ({error}); starting over", stacklevel=2)
        self.done: dict[str, Any] = kept.get("done", {}) if kept.get("key") == self.key else {}

    def get(self, name: str, model: Callable[[], nn.Module], batch: Batch) -> dict[str, Any]:
        if name not in self.done:
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CamkitWarning)
                report = evaluate(
                    model(), [batch], list(METHODS), _metrics(), settings=_settings(batch)
                )
            self.done[name] = {"rows": report.rows, "seconds": time.perf_counter() - started}
            # whole or not at all: a run killed while writing keeps the last file
            write_text(self.path, json.dumps({"key": self.key, "done": self.done}, indent=1))
            print(f"{name}: {self.done[name]['seconds']:.0f} s", flush=True)
        rows: dict[str, Any] = self.done[name]["rows"]
        return rows

    @property
    def seconds(self) -> float:
        return sum(float(run["seconds"]) for run in self.done.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/evaluation/meta"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = benchmark("shortcut", args.images, 96)  # the conflict split, the tag as the mask
    batch = to_batch([data[i] for i in range(len(data))], "cpu", print)
    assert batch is not None
    model = load_shortcut_model()
    runs = _Runs(args.out / "runs.json", args.images)
    names = [
        "trained",
        "random",
        *(f"{kind} {d}" for d in range(args.draws) for kind in ("minor", "disruptive")),
    ]
    left = [name for name in names if name not in runs.done]
    cost = evaluation_cost(
        Evaluation(model, list(METHODS), _metrics(), settings=_settings(batch)),
        batch.inputs[:8],
        args.images,
    )
    print(
        f"{len(left)} evaluations of {args.images} images x {len(METHODS)} methods x "
        f"{len(_metrics())} metrics ({len(names) - len(left)} kept from the last run): about "
        f"{duration(len(left) * cost.seconds)}",
        flush=True,
    )
    trained = runs.get("trained", lambda: model, batch)
    random = runs.get("random", lambda: _randomised(model), batch)
    minor, disruptive = [], []
    for draw in range(args.draws):
        generator = torch.Generator().manual_seed(100 + draw)
        shaken = dataclasses.replace(
            batch,
            inputs=batch.inputs + 0.001 * torch.randn(batch.inputs.shape, generator=generator),
        )
        minor.append(runs.get(f"minor {draw}", partial(_noisy, model, 0.001, draw), shaken))
        disruptive.append(runs.get(f"disruptive {draw}", partial(_noisy, model, 0.5, draw), batch))
    specs, kinds = column_specs(), column_categories()
    known = [trained[m][KNOWN] for m in METHODS]
    rows = []
    for column, (better, _) in specs.items():
        if column in (KNOWN, "Explain s") or column not in trained[METHODS[0]]:
            continue
        sign = 1.0 if better == "higher" else -1.0

        def figures(
            rows_: dict[str, dict[str, float]], name: str = column, turn: float = sign
        ) -> list[float]:
            return [turn * rows_[m].get(name, float("nan")) for m in METHODS]

        agreement = _spearman(figures(trained), known)

        def gap(rows_: dict[str, dict[str, float]], name: str = column) -> float:
            base = rows_["randomcam"].get(name, float("nan"))
            others = [
                abs(rows_[m].get(name, float("nan")) - base) for m in METHODS if m != "randomcam"
            ]
            return sum(others) / len(others)

        collapse = gap(random) / gap(trained) if gap(trained) else float("nan")
        resilience = [_spearman(figures(trained), figures(r)) for r in minor]
        reactivity = [1 - _spearman(figures(trained), figures(r)) for r in disruptive]
        rows.append(
            (kinds.get(column, "other"), column, agreement, collapse, resilience, reactivity)
        )

    def spread(values: list[float]) -> str:
        mean = sum(values) / len(values)
        return f"{mean:.2f} [{min(values):.2f}, {max(values):.2f}]"

    lines = [
        f"Shortcut model, {args.images} conflict images, {len(METHODS)} methods "
        f"({', '.join(METHODS)}); known answer: {KNOWN} on the tag; {len(_metrics())} metrics. "
        f"Settings: {SETTINGS}. Resilience and reactivity: mean [range] over {args.draws} "
        "perturbations.",
        "",
        "| kind | metric | agrees with the known answer (Spearman over methods) ↑ | "
        "gap to RandomCAM, random weights / trained ↓ | resilience (minor) ↑ | "
        "reactivity (disruptive) ↑ |",
        "|---|---|---:|---:|---:|---:|",
        *(
            f"| {k} | {c} | {a:+.2f} | {r:.2f} | {spread(res)} | {spread(rea)} |"
            for k, c, a, r, res, rea in sorted(rows)
        ),
        "",
        f"{runs.seconds:.0f} s of evaluations on {torch.get_num_threads()} CPU threads.",
    ]
    write_text(args.out / "meta.md", "\n".join(lines) + "\n")
    write_text(
        args.out / "meta.json",
        json.dumps(
            {
                "trained": trained,
                "random": random,
                "minor": minor,
                "disruptive": disruptive,
                "rows": rows,
            },
            indent=1,
        ),
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
