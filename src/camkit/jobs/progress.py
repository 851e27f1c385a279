"""How a job tells its caller what happens while it runs: the command draws a progress bar and
prints failures; a Python caller may collect them (`Collected`, the default)."""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar

from typing_extensions import override


class Progress(Protocol):
    """What a job reports. Jobs call it from their writer threads too: it must be thread-safe.

    Examples:
        >>> class Printed(Progress):
        ...     def fail(self, line: str) -> None:
        ...         print("failed:", line)
        >>> Printed().fail("x.png: not an image")
        failed: x.png: not an image
    """

    def start(self, total: int, done: int = 0) -> None:
        """The job has `total` items, `done` of them finished by an earlier run."""

    def advance(self, count: int = 1) -> None:
        """`count` more items are finished (written, failed or skipped)."""

    def fail(self, line: str) -> None:
        """One failure, told in one line (the input, the method, what went wrong)."""

    def note(self, line: str) -> None:
        """Something to know before or while the job runs (what a long job will cost)."""


class Collected(Progress):
    """A `Progress` that keeps the failure lines and counts the items done.

    Examples:
        >>> progress = Collected()
        >>> progress.start(3); progress.advance(2); progress.fail("x.png: not an image")
        >>> progress.done, progress.total, progress.failures
        (2, 3, ['x.png: not an image'])
    """

    def __init__(self) -> None:
        self.total = self.done = 0
        self.failures: list[str] = []
        self.notes: list[str] = []
        self._lock = threading.Lock()

    @override
    def start(self, total: int, done: int = 0) -> None:
        with self._lock:
            self.total, self.done = total, done

    @override
    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count

    @override
    def fail(self, line: str) -> None:
        with self._lock:
            self.failures.append(line)

    @override
    def note(self, line: str) -> None:
        with self._lock:
            self.notes.append(line)


R = TypeVar("R")


class JobInterrupted(KeyboardInterrupt, Generic[R]):
    """Ctrl-C during a job: `result` says what was finished (and written). A
    `KeyboardInterrupt`, so code that does not look for it stops as on any Ctrl-C.

    Examples:
        >>> try:
        ...     raise JobInterrupted({"done": 3})
        ... except KeyboardInterrupt as interrupted:
        ...     interrupted.result
        {'done': 3}
    """

    def __init__(self, result: R) -> None:
        super().__init__("interrupted")
        self.result = result
