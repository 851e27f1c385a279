"""`camkit layers`: the layers of a model that can be explained, and the automatic choice."""

from __future__ import annotations

import argparse

import torch

from camkit.cli import COMMANDS
from camkit.cli.common import add_options, flag, job_from
from camkit.errors import UsageError
from camkit.jobs import LayersJob
from camkit.jobs.fields import check_job
from camkit.layers import candidates, choose_layer
from camkit.models import BUNDLED_MODELS


def layers_command(args: argparse.Namespace) -> int:
    """Run `camkit layers`; returns the exit code."""
    job = job_from(args, LayersJob)
    check_job(job, flag)
    loaded = job.load()
    model = loaded.model
    side = job.size or loaded.size or (96 if loaded.name in BUNDLED_MODELS else 224)
    x = torch.rand(1, 3, side, side, device=job.device)
    try:
        found = candidates(model, x)
    except ValueError as error:
        raise UsageError(f"{loaded.name} on a {side} x {side} input: {error}") from None
    try:
        choice, reason = choose_layer(model, x), ""
    except ValueError as error:
        choice, reason = None, str(error)
    automatic = () if choice is None else choice.names
    rows = [("layer", "output shape", "layout", "grid", "")]
    for c in found:
        mark = "<- automatic" if c.name in automatic else ""
        grid = " x ".join(map(str, c.grid))
        rows.append((c.name, str(tuple(c.shape)), c.layout, grid, mark))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]).rstrip())
    summary = f"camkit: {len(found)} layers of {loaded.name} on a {side} x {side} input"
    if choice is None:
        print(f"{summary}; no automatic choice: {reason}")
        return 1
    sure = "" if choice.sure else " (not sure: no rule knows this family)"
    print(f"{summary}; automatic: {', '.join(automatic)}, {choice.rule}{sure}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command and its options."""
    parser = commands.add_parser(
        "layers",
        help=COMMANDS["layers"],
        description="List a model's explainable layers for one input: name, output shape, "
        "layout (spatial, tokens, channels-last) and grid; the automatic choice is marked.",
    )
    add_options(parser, LayersJob)
    parser.set_defaults(run=layers_command)
