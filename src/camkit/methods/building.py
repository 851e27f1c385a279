"""A method by name, with its own options: what the command, the jobs and Ray workers build.

A method's options are the keyword-only parameters of its constructor beyond those every
method takes (`MethodOptions`); the command spells one as ``METHOD.NAME=VALUE``.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from camkit.layers import LayerSpec
from camkit.methods.base import Explainer, MethodOptions, method_class

MethodSettings = Mapping[str, Mapping[str, Any]]
"""Method name -> its options by keyword, e.g. ``{"finercam": {"compare": 2}}``."""


def options_of(name: str) -> dict[str, inspect.Parameter]:
    """The options particular to the method `name`: keyword -> parameter (with its default).

    Examples:
        >>> sorted(options_of("finercam"))
        ['alpha', 'base', 'compare', 'weighting']
    """
    shared = set(MethodOptions.__annotations__)
    found: dict[str, inspect.Parameter] = {}
    for cls in reversed(method_class(name).__mro__):
        init = cls.__dict__.get("__init__")
        if init is None or cls is Explainer or not issubclass(cls, Explainer):
            continue
        parameters = inspect.signature(inspect.unwrap(init)).parameters.values()
        found.update(
            (p.name, p) for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in shared
        )
    return found


def parse_method_options(texts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["finercam.compare=2", "sess.scales=[64, 96]"]`` -> options by method; values are
    Python literals (numbers, lists, True/None) or else text. A `ValueError` names an unknown
    method or option (with the method's options).

    Examples:
        >>> parse_method_options(["finercam.compare=2", "kpcacam.kernel=rbf"])
        {'finercam': {'compare': 2}, 'kpcacam': {'kernel': 'rbf'}}
    """
    parsed: dict[str, dict[str, Any]] = {}
    for text in texts:
        key, equals, value = text.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not equals or not dot or not method or not name:
            raise ValueError(f"{text!r}: write a method's option as METHOD.NAME=VALUE")
        known = options_of(method)
        if name not in known:
            listed = ", ".join(known) or "none"
            raise ValueError(f"{method} has no option {name!r}; its options: {listed}")
        parsed.setdefault(method, {})[name] = _literal(value.strip())
    return parsed


def _literal(text: str) -> Any:  # noqa: ANN401 - whatever the text spells
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def build(
    name: str,
    model: nn.Module,
    layer: LayerSpec = None,
    options: MethodSettings | None = None,
) -> Explainer:
    """The method registered as `name` for `model`, with its options from `options`.

    Examples:
        >>> import camkit
        >>> net = camkit.models.example_net()
        >>> build("kpcacam", net, options={"kpcacam": {"kernel": "rbf"}}).kernel
        'rbf'
    """
    return method_class(name)(model, layer, **dict((options or {}).get(name, {})))
