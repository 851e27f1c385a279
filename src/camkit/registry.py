"""Name -> class registries for methods and metrics: one way to add, check and name an entry."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

C = TypeVar("C", bound=type)
T = TypeVar("T")


def adder(registry: dict[str, Any], kind: str, name: str) -> Callable[[C], C]:
    """A class decorator that registers the class as `name` (refusing a name in use) and sets
    its ``name`` attribute.

    Examples:
        >>> entries: dict[str, type] = {}
        >>> @adder(entries, "metric", "demo")
        ... class Demo:
        ...     name = ""
        >>> entries["demo"] is Demo, Demo.name
        (True, 'demo')
    """

    def add(cls: C) -> C:
        if name in registry:
            raise ValueError(f"a {kind} named {name!r} is already registered")
        setattr(cls, "name", name)  # noqa: B010 - any class, not only those declaring it
        registry[name] = cls
        return cls

    return add


def lookup(registry: Mapping[str, T], kind: str, name: str) -> T:
    """The entry registered as `name`; a `ValueError` naming the close matches and every valid
    name otherwise (the one message every entry point gives for a wrong name).

    Examples:
        >>> lookup({"cam": 1, "gradcam": 2}, "method", "gradcm")
        Traceback (most recent call last):
        ...
        ValueError: unknown method 'gradcm' (did you mean 'gradcam'?); valid: cam, gradcam
    """
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(str(name), list(registry), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ValueError(f"unknown {kind} {name!r}{hint}; valid: {', '.join(registry)}")
