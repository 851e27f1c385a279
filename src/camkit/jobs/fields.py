"""The option framework: a job's option is a dataclass field with an `Option` (type, range,
help, checks, how the command spells it); `check_job` checks them all before any work."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from camkit.errors import UsageError

Label = Callable[[str], str]
"""How an option is named in a message: its field name for Python users, its flag (``--name``)
for the command."""


@dataclasses.dataclass(frozen=True)
class Option:
    """How one field of a job is given and checked.

    low/high: the range (inclusive) of a number, `unit` saying what it counts; `check`: a
    further check that raises `UsageError` (with the option's label); `parse`: turns the text
    the command reads into the field's value; `flag`/`metavar`/`nargs`/`choices`/`positional`:
    how the command spells it. `kind` is the type the command reads (a bool is a switch).
    """

    help: str
    kind: type = str
    low: float | None = None
    high: float | None = None
    unit: str = ""
    check: Callable[[Any, str], None] | None = None
    parse: Callable[[str, str], Any] | None = None
    metavar: str | None = None
    nargs: int | str | None = None
    choices: tuple[str, ...] | None = None
    positional: bool = False
    group: str | None = None  # options of one group exclude each other


def option(default: object, help_text: str, kind: type = str, **how: Any) -> Any:  # noqa: ANN401 - a dataclass field, as dataclasses.field returns
    """A job field with its `Option`: the default, the help text, the type the command reads,
    and the rest of `Option` by keyword.

    Examples:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class Job:
        ...     steps: int = option(16, "steps of the curves", int, low=1, unit="steps")
        >>> check_job(Job(steps=0))
        Traceback (most recent call last):
        ...
        camkit.errors.UsageError: steps 0: must be at least 1 (steps)
    """
    return dataclasses.field(default=default, metadata={"option": Option(help_text, kind, **how)})


def options_of(job: type | object) -> Iterator[tuple[dataclasses.Field[Any], Option]]:
    """(field, option) for each option of a job class, in declaration order."""
    for field in dataclasses.fields(job):  # type: ignore[arg-type]  # job classes are dataclasses
        if "option" in field.metadata:
            yield field, field.metadata["option"]


def check_job(job: object, label: Label = str) -> None:
    """Every option of `job` in its range and past its own check; a `UsageError` names the
    first that is not (by `label`), before any work."""
    for field, spec in options_of(job):
        value = getattr(job, field.name)
        name = label(field.name)
        if value is None or isinstance(value, bool):
            continue
        if spec.high is not None and isinstance(value, (int, float)) and not value <= spec.high:
            raise UsageError(f"{name} {value}: at most {spec.high:g} ({spec.unit})")
        if spec.low is not None and isinstance(value, (int, float)) and not value >= spec.low:
            raise UsageError(f"{name} {value}: must be at least {spec.low:g} ({spec.unit})")
        if spec.check is not None:
            spec.check(value, name)
