"""Child processes for the tests that stop a command with a signal."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from typing import Any

STOPS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
"""Ctrl-C and the stop signals camkit answers as Ctrl-C."""


def _stops_at_default() -> None:
    for name in STOPS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def stoppable(command: Sequence[str], **popen: Any) -> subprocess.Popen[str]:
    """`command` started as a terminal starts it: every stop signal at its default. A suite run
    as a background job or under `nohup` has SIGINT or SIGHUP ignored, and children inherit
    that (camkit keeps a signal it was started with ignored, as its user asked); the tests of
    the stops would then test nothing."""
    return subprocess.Popen(list(command), text=True, preexec_fn=_stops_at_default, **popen)
