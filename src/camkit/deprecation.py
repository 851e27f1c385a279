"""Old names keep working for one release, with a `DeprecationWarning` that names the new one."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**new_names: str) -> Callable[[F], F]:
    """Decorator: keywords under their old names (``old="new"``) are passed on under the new
    ones, with a warning; both at once is a `TypeError`.

    Examples:
        >>> @renamed_keywords(map="heat")
        ... def draw(heat: int) -> int:
        ...     return heat
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     draw(map=3), str(caught[0].message)
        (3, 'draw(map=) is now draw(heat=); the old name goes in the next release')
    """

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in new_names.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{function.__name__}() got {old}= and {new}=: give {new}=")
                    warnings.warn(
                        f"{function.__name__}({old}=) is now {function.__name__}({new}=); the "
                        "old name goes in the next release",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return call  # type: ignore[return-value]  # same signature, by functools.wraps

    return decorate


def moved(module: str, names: dict[str, tuple[str, Any]]) -> Callable[[str], Any]:
    """A module `__getattr__` for names that moved or were renamed: old name -> (new place,
    object), with a warning.

    Examples:
        >>> getattr_ = moved("camkit.x", {"Old": ("camkit.y.New", int)})
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     getattr_("Old")
        <class 'int'>
    """

    def get(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new, value = names[name]
        warnings.warn(
            f"{module}.{name} is now {new}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return get
