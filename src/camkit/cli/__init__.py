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
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn, cast

from camkit.errors import CamkitWarning, UsageError

COMMANDS = {
    "explain": "explain images: overlays, a grid and a JSON summary per image",
    "evaluate": "score methods with faithfulness, localisation and sanity metrics",
    "layers": "list the layers that can be explained (name, output shape, layout) and the "
    "automatic choice",
    "classes": "list a model's classes (index and name): what --target takes",
    "app": "explore a model's maps in the browser (pip install 'camkit[app]')",
}
"""Each command (module `camkit.cli.NAME`) and its line in ``camkit --help``. A command's module
is imported only when it runs (or its help is asked for): its options come from the job classes
and the method and metric registries, which import torch (seconds), so ``camkit --help`` and a
mistyped command answer without them."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the one-line form of every other camkit error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"camkit: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; each command module adds its own subcommand and options. Given the
    arguments, only the command they name gets its options (the others are listed by name)."""
    parser = _Parser(prog="camkit", description="Class activation maps for PyTorch classifiers.")
    # Subcommands are _Parsers too (one-line errors); typed as the ArgumentParsers they are.
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True),
    )
    chosen = argv[0] if argv else None
    for name, summary in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"camkit.cli.{name}").add_parser(commands)
        else:
            commands.add_parser(name, help=summary)
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
    return run(parse(argv))


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed arguments (`sys.argv` when not given). This imports the command's module, and
    with it torch and camkit: most of the start-up time, which the entry point keeps apart from
    the work (a Ctrl-C here ends the process at once). A wrong argument exits with code 2.

    Examples:
        >>> parse(["layers", "--model", "shapes"]).command
        'layers'
    """
    given = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(given).parse_args(given)
    args.argv = given
    return args


def run(args: argparse.Namespace) -> int:
    """Run parsed arguments (from `parse`); returns the exit code.

    Examples:
        >>> run(parse(["classes", "--model", "shapes"]))  # doctest: +NORMALIZE_WHITESPACE
        0 disc
        1 square
        2 triangle
        3 star
        4 cross
        5 ring
        0
    """
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
