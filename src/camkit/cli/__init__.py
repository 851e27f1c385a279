"""The `camkit` command: `camkit explain` (overlays, grids and JSON for image files, any model),
`camkit evaluate` (faithfulness, localisation and sanity metrics for every method) and
`camkit layers` (the layers that can be explained, and the automatic choice), `camkit classes`
(a model's classes) and `camkit app` (the same in the browser).

Exit codes: 0 everything was written; 1 some inputs or methods failed (the rest was written);
2 the command itself is wrong (unknown model, method, layer or option, an out-of-range value, an
unwritable output folder): checked before any work, nothing was written; 130 interrupted
(Ctrl-C): only complete files were written.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn, cast

from camkit.cli import app, classes, evaluate, explain, layers
from camkit.errors import CamkitWarning, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the one-line form of every other camkit error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"camkit: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each command module adds its own subcommand and options."""
    parser = _Parser(prog="camkit", description="Class activation maps for PyTorch classifiers.")
    # Subcommands are _Parsers too (one-line errors); typed as the ArgumentParsers they are.
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True),
    )
    explain.add_parser(commands)
    evaluate.add_parser(commands)
    layers.add_parser(commands)
    classes.add_parser(commands)
    app.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as out:
        ...     main(["explain", "--out", out, "--methods", "gradcam"])
        camkit: wrote ...
        0
    """
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        # One line per warning, like the errors (restored when the command returns).
        warnings.showwarning = _show_warning
        warnings.simplefilter("default", CamkitWarning)  # a command reports, never raises
        try:
            return int(args.run(args))
        except UsageError as error:
            print(f"camkit: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # before the command's own handling starts (loading)
            print("\ncamkit: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader went away (camkit layers | head): stop quietly
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more is written
            return 0


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    print(f"camkit: warning: {message}", file=sys.stderr)
