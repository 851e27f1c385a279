"""The `camkit` command's entry point, kept apart from the `camkit` package on purpose.

Importing camkit imports torch: seconds, during which Python would answer Ctrl-C with a
traceback. This module imports nothing heavy itself, so the imports that take the time (the
command's module, parsed with its arguments) happen inside `main`, where an interrupt at any
moment ends the command with one line and exit 130 (during the imports, at once: nothing has
started); SIGTERM, SIGHUP and SIGQUIT end it the same way. A signal the command was started
with ignored (`nohup` ignores SIGHUP; a shell script's background job, SIGINT) stays ignored:
whoever started it asked for that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

Handler = Callable[[int, "FrameType | None"], None]
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT (128 + 2)


# A service manager's stop (SIGTERM), a closed terminal (SIGHUP) and Ctrl-\ (SIGQUIT) end the
# command as Ctrl-C does: one line, complete files only, the app's session files removed.
STOPPING = ("SIGTERM", "SIGHUP", "SIGQUIT")


def main() -> int:
    """Run `camkit` with the process's arguments; returns the exit code."""
    ignored = {name for name in ("SIGINT", *STOPPING) if _ignored(name)}
    # While torch and camkit import, nothing has started: a Ctrl-C (or stop) ends the process
    # at once with the line. Raised there, the KeyboardInterrupt could land inside a native
    # module's initialisation, which turns it into an ImportError (a traceback) or, where a
    # library imports it optionally (torch imports pynvml so), into nothing at all: the run
    # would go on and end with 0.
    _handle(("SIGINT", *STOPPING), _interrupted_at_exit, ignored)
    from camkit.cli import parse, run

    args = parse()  # imports the command's module: torch and camkit, most of the start-up
    _handle(("SIGINT",), signal.default_int_handler, ignored)
    _handle(STOPPING, _stop, ignored)
    try:
        code = run(args)
    except KeyboardInterrupt:  # before the command's own handling starts, or after it ends
        code = _say_interrupted()
    # From here Python flushes and shuts down (torch's exit handlers run): a late Ctrl-C (or
    # stop) ends the process at once with the same line, rather than a traceback from an exit
    # handler.
    _handle(("SIGINT", *STOPPING), _interrupted_at_exit, ignored)
    return code


def _ignored(name: str) -> bool:
    return hasattr(signal, name) and signal.getsignal(getattr(signal, name)) == signal.SIG_IGN


def _handle(names: tuple[str, ...], handler: Handler, ignored: set[str]) -> None:
    for name in names:
        if hasattr(signal, name) and name not in ignored:  # not every platform has them all
            signal.signal(getattr(signal, name), handler)


def _stop(_signal: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _say_interrupted() -> int:
    print("\ncamkit: interrupted", file=sys.stderr, flush=True)
    return INTERRUPTED


def _interrupted_at_exit(_signal: int, _frame: FrameType | None) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to say there
            stream.flush()
    os.write(2, b"\ncamkit: interrupted\n")
    os._exit(INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
