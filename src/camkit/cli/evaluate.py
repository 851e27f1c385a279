"""`camkit evaluate`: every metric for every method on a dataset (`camkit.jobs.evaluate_dataset`).

The command parses, calls the job and prints the table and a closing line. Exit 1 when an
image, mask or method failed (the rest was evaluated), 130 on Ctrl-C (the report of the images
finished is written).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap

from camkit.cli import COMMANDS
from camkit.cli.common import TerminalProgress, add_options, add_settings, flag, job_from
from camkit.evaluation import METRICS, Load, Settings
from camkit.files import shown
from camkit.jobs import EvaluateJob, JobInterrupted, evaluate_dataset


def evaluate_command(args: argparse.Namespace) -> int:
    """Run `camkit evaluate`; returns the exit code."""
    job = job_from(args, EvaluateJob)
    job = dataclasses.replace(job, command="camkit " + " ".join(args.argv))
    progress = TerminalProgress("evaluating")
    try:
        result = evaluate_dataset(job, progress, label=flag)
    except JobInterrupted as interrupted:
        progress.close()
        images, total = interrupted.result.images, interrupted.result.total
        if not images:
            print("\ncamkit: interrupted before the first batch was done", file=sys.stderr)
        else:
            print(
                f"\ncamkit: interrupted; wrote the results of the {images} images finished "
                f"(of {total}) to {shown(job.folder)}/",
                file=sys.stderr,
            )
        return 130
    finally:
        progress.close()
    if result.report is None or not result.files:
        return 1
    report = result.report
    print(report.to_markdown(), end="")
    plots = len(result.files) - 3
    print(
        f"camkit: evaluated {report.info['images']} images x {len(report.rows)} methods in "
        f"{report.info['seconds']} s; wrote results.md/.csv/.json and {plots} plots to "
        f"{shown(job.folder)}/"
    )
    return 1 if result.failures else 0


GRADCAM_LOAD = Load(images=50, explain=2.0, steps=7)
"""The load the help's costs are told for: Grad-CAM (a forward and a backward pass) on 50
images of the bundled model (7 randomisation steps)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command and its options (the fields of `EvaluateJob`, and a flag for each
    metric plug-in's setting)."""
    parser = commands.add_parser(
        "evaluate",
        help=COMMANDS["evaluate"],
        description=textwrap.fill(
            "Evaluate CAM methods on a dataset: a table (terminal, Markdown, CSV, JSON) and "
            "plots. No arguments: one or two methods of each kind on 50 images of the bundled "
            "benchmark, every metric but the costly ones, in about a minute on 2 CPU cores; "
            "--methods all --metrics all --limit 200 is the full run."
        ),
        epilog="metrics (kind: columns, ↑ higher or ↓ lower is better; needs; passes per input "
        "with Grad-CAM, default settings; * only when named or with --metrics all):\n"
        + "\n".join(
            f"  {'' if cls.default else '* '}{cls.describe(Settings(), GRADCAM_LOAD)}"
            for cls in METRICS.values()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, EvaluateJob)
    add_settings(parser)
    parser.set_defaults(run=evaluate_command)
