"""`camkit explain`: overlays, a grid and a JSON summary per image (`camkit.jobs.explain_folder`).

The command parses, calls the job and prints: one line per failure while it runs, one line at
the end. Exit 1 when an input or method failed (the rest was written), 130 on Ctrl-C (only
complete files were written).
"""

from __future__ import annotations

import argparse
import sys

from camkit.cli import COMMANDS
from camkit.cli.common import TerminalProgress, add_options, flag, job_from
from camkit.files import shown
from camkit.jobs import ExplainJob, JobInterrupted, explain_folder


def explain_command(args: argparse.Namespace) -> int:
    """Run `camkit explain`; returns the exit code."""
    job = job_from(args, ExplainJob)
    progress = TerminalProgress("explaining")
    try:
        result = explain_folder(job, progress, label=flag)
    except JobInterrupted as interrupted:
        progress.close()
        done = interrupted.result
        print(
            f"\ncamkit: interrupted after {done.done} of {done.inputs} input(s); wrote "
            f"{done.written} complete files to {shown(job.folder)}/",
            file=sys.stderr,
        )
        return 130
    finally:
        progress.close()
    print(
        f"camkit: wrote {result.written} files for {result.inputs} input(s) to "
        f"{shown(job.folder)}/{result.notes()}"
    )
    return 1 if result.failures else 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command and its options (the fields of `ExplainJob`)."""
    parser = commands.add_parser(
        "explain",
        help=COMMANDS["explain"],
        description="Explain images (files or folders; none: the bundled samples) with a model.",
    )
    add_options(parser, ExplainJob)
    parser.set_defaults(run=explain_command)
