"""What the commands share: their parsers, made from the job classes' fields (each option is
declared once, in `camkit.jobs.options`), and the terminal's progress bar and failure lines."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
import time
from typing import Any, TypeVar

from tqdm import tqdm
from typing_extensions import override

from camkit.errors import UsageError
from camkit.evaluation import metric_settings
from camkit.evaluation.plugins import SHARED
from camkit.jobs.fields import Option, options_of
from camkit.jobs.progress import Progress

J = TypeVar("J")

EVALUATION_SETTINGS = "evaluation settings"
"""The title of the flag group made from the metric plug-ins' settings."""


def flag(name: str) -> str:
    """The command's flag for a job field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, job: type) -> None:
    """The flags (and positional arguments) of every option of the job class."""
    groups: dict[str, Any] = {}
    for field, spec in options_of(job):
        target: Any = parser
        if spec.group is not None:
            if spec.group not in groups:
                groups[spec.group] = parser.add_mutually_exclusive_group()
            target = groups[spec.group]
        _add(target, field, spec)


def _add(parser: Any, field: dataclasses.Field[Any], spec: Option) -> None:
    if spec.kind is bool:
        parser.add_argument(flag(field.name), action="store_true", help=spec.help)
        return
    how: dict[str, Any] = {"help": spec.help}
    if spec.parse is None and spec.kind is not str:
        how["type"] = spec.kind
    for key in ("metavar", "nargs", "choices"):
        if getattr(spec, key) is not None:
            how[key] = getattr(spec, key)
    if spec.nargs == "append":  # a flag given once per value: --prompt A --prompt B
        del how["nargs"]
        how["action"] = "append"
    if spec.nargs == "?":  # a flag given alone: the empty value (Ray: RAY_ADDRESS or local)
        how["const"] = ""
    if spec.positional:
        parser.add_argument(field.name, **how)
    else:
        parser.add_argument(flag(field.name), dest=field.name, **how)


def add_settings(parser: argparse.ArgumentParser) -> None:
    """A flag for each evaluation setting that has one (the shared ones and those the metric
    plug-ins declare), with its default and range in the help."""
    group = parser.add_argument_group(EVALUATION_SETTINGS)
    taken = set(parser._option_string_actions)  # a job option of that name (--seed) wins
    for setting in (*SHARED, *metric_settings().values()):
        if setting.flag and flag(setting.name) not in taken:
            default = "" if setting.default is None else f" (default: {setting.default})"
            group.add_argument(
                flag(setting.name),
                dest=f"setting_{setting.name}",
                metavar=setting.name.upper(),
                type=setting.kind,
                help=setting.help + default,
            )


def job_from(args: argparse.Namespace, job: type[J]) -> J:
    """The job described by the parsed arguments: each option's text parsed as its field
    wants (a `UsageError` naming the flag when it cannot be)."""
    values: dict[str, Any] = {}
    for field, spec in options_of(job):
        value = getattr(args, field.name, None)
        if value is None and spec.kind is not bool:
            continue
        if spec.parse is not None:
            value = spec.parse(str(value), flag(field.name))
        elif spec.nargs in ("*", "+", 3, "append") and value is not None:
            value = tuple(value)
        values[field.name] = value
    settings = {
        k.removeprefix("setting_"): v
        for k, v in vars(args).items()
        if k.startswith("setting_") and v is not None
    }
    if settings:
        values["settings"] = settings
    return job(**values)


class _Stderr:
    """Writes to whatever `sys.stderr` is when it writes (a Ray run points it elsewhere for a
    while); a progress bar made earlier follows it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class TerminalProgress(Progress):
    """A job's `camkit.jobs.Progress` on the terminal: a bar on stderr with the rate and the
    time left (on a terminal and for more than one item), one line per failure and per note.

    Off a terminal (a log, a pipe, a service), where no bar shows, a line on stderr every
    `every` seconds (every minute after the first) says how far the job is and how long it has
    taken.
    """

    def __init__(self, label: str, every: float = 10.0) -> None:
        self.label = label
        self.every = every
        self.bar: tqdm | None = None
        self.lock = threading.Lock()  # writer threads report too
        self.ticking = threading.Event()
        self.done = 0

    @override
    def start(self, total: int, done: int = 0) -> None:
        self.close()
        self.done = done
        terminal = sys.stderr.isatty()
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=self.label,
            unit="img",
            file=_Stderr(),
            disable=total <= 1 or not terminal,
            dynamic_ncols=True,
        )
        if not terminal:
            self.ticking = threading.Event()
            threading.Thread(
                target=self._tick,
                args=(self.ticking, total, done, time.monotonic()),
                name="camkit-progress",
                daemon=True,
            ).start()

    def _tick(self, stop: threading.Event, total: int, before: int, started: float) -> None:
        # every `every` seconds for the first minute, then every minute
        while not stop.wait(self.every if time.monotonic() - started < 60 else 60):
            with self.lock:
                done = self.done
            elapsed = time.monotonic() - started
            left = ""
            if done > before:
                left = f", about {_clock(elapsed / (done - before) * (total - done))} left"
            print(
                f"camkit: {self.label}: {done} of {total} done after {_clock(elapsed)}{left}",
                file=sys.stderr,
                flush=True,
            )

    @override
    def note(self, line: str) -> None:
        with self.lock:
            print(f"camkit: {line}", file=sys.stderr, flush=True)

    @override
    def advance(self, count: int = 1) -> None:
        with self.lock:
            self.done += count
            if self.bar is not None:
                self.bar.update(count)

    @override
    def fail(self, line: str) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.clear()
            print(f"camkit: error: {line}", file=sys.stderr)
            if self.bar is not None:
                self.bar.refresh()

    def close(self) -> None:
        """Remove the bar and stop the lines (a later `start` begins again)."""
        self.ticking.set()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


__all__ = ["TerminalProgress", "UsageError", "add_options", "add_settings", "flag", "job_from"]
