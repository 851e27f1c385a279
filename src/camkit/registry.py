"""Name -> class registries for methods and metrics: one way to add, check and name an entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

C = TypeVar("C", bound=type)


def adder(registry: dict[str, Any], kind: str, name: str) -> Callable[[C], C]:
    """A class decorator that registers the class as `name` (refusing a name in use) and sets
    its ``name`` attribute.

    Example:
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
        cls.name = name
        registry[name] = cls
        return cls

    return add
