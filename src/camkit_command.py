"""The `camkit` command's entry point, kept apart from the `camkit` package on purpose.

Importing camkit imports torch: seconds, during which Python would answer Ctrl-C with a
traceback. This module imports nothing heavy itself, so the import that takes the time happens
inside `main`, where an interrupt at any moment ends the command with one line and exit 130;
SIGTERM, SIGHUP and SIGQUIT end it the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType

INTERRUPTED = 130  # the shell's code for a command ended by SIGINT (128 + 2)


# A service manager's stop (SIGTERM), a closed terminal (SIGHUP) and Ctrl-\ (SIGQUIT) end the
# command as Ctrl-C does: one line, complete files only, the app's session files removed.
STOPPING = ("SIGTERM", "SIGHUP", "SIGQUIT")


def main() -> int:
    """Run `camkit` with the process's arguments; returns the exit code."""
    for name in STOPPING:
        if hasattr(signal, name):  # not every platform has them all
            signal.signal(getattr(signal, name), _stop)
    try:
        from camkit.cli import main as run  # torch and camkit: most of the start-up time

        code = run()
    except KeyboardInterrupt:  # before the command's own handling starts, or after it ends
        code = _say_interrupted()
    # From here Python flushes and shuts down (torch's exit handlers run): a late Ctrl-C (or
    # stop) ends the process at once with the same line, rather than a traceback from an exit
    # handler.
    for name in ("SIGINT", *STOPPING):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupted_at_exit)
    return code


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
