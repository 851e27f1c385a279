"""`camkit classes`: a model's classes, the names `--target` takes."""

from __future__ import annotations

import argparse

import torch

from camkit.cli import COMMANDS
from camkit.cli.common import add_options, flag, job_from
from camkit.jobs import ClassesJob
from camkit.jobs.fields import check_job
from camkit.targets import select_output


def classes_command(args: argparse.Namespace) -> int:
    """Run `camkit classes`; returns the exit code."""
    job = job_from(args, ClassesJob)
    check_job(job, flag)
    loaded = job.load()
    if loaded.classes:
        for index, name in enumerate(loaded.classes):
            print(f"{index}\t{name}")
        return 0
    side = loaded.size or 96
    with torch.inference_mode():
        probe = loaded.normalise(torch.rand(3, side, side))[None].to(job.device)
        count = select_output(loaded.model(probe)).shape[-1]
    print(f"camkit: {loaded.name} names no classes; --target takes an index from 0 to {count - 1}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the command and its options."""
    parser = commands.add_parser(
        "classes",
        help=COMMANDS["classes"],
        description="Print each class of the model, one per line: its index, a tab, its name.",
    )
    add_options(parser, ClassesJob)
    parser.set_defaults(run=classes_command)
