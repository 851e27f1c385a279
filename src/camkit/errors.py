"""camkit's warning category, its usage error, and how a failure is told in one line."""


class CamkitWarning(UserWarning):
    """A map was computed but may not mean what you expect (constant map, training mode, ...).

    Examples:
        >>> import warnings, camkit
        >>> warnings.simplefilter("error", camkit.CamkitWarning)  # make them fatal in a test suite
    """


class UsageError(Exception):
    """A job asks for something that does not exist or cannot work (an unknown model, method,
    layer or class, an out-of-range option, an output folder that cannot be written): raised
    by `camkit.jobs` before any work, so nothing was done. `camkit`'s command exits with code 2
    on it.

    Examples:
        >>> from camkit.jobs import ExplainJob
        >>> from camkit.jobs.fields import check_job
        >>> try:
        ...     check_job(ExplainJob(batch_size=0))
        ... except UsageError as error:
        ...     print(error)
        batch_size 0: must be at least 1 (images held at once)
    """


class ModelError(ValueError):
    """A model that cannot be loaded as asked (`camkit.models.load_model`): an unknown name,
    weights that do not fit or cannot be read, a package it needs. A `ValueError`, as every
    other refusal of the library; a job turns it into its `UsageError`.

    Examples:
        >>> from camkit.models import load_model
        >>> try:
        ...     load_model("no-such-model")
        ... except ModelError as error:
        ...     print(str(error)[:30])
        unknown model 'no-such-model':
    """


def first_line(error: BaseException) -> str:
    r"""The first line of an exception's message, or its type's name when it has none (an
    empty message must still say something, never fail itself).

    Examples:
        >>> first_line(ValueError("bad shape\nthe details"))
        'bad shape'
        >>> first_line(KeyError())
        'KeyError'
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def reason(error: BaseException) -> str:
    """One line for a failure: the first line of the message, after the exception's type
    unless it is a `ValueError` or `TypeError` (camkit's own refusals, whose messages say it
    all).

    Examples:
        >>> reason(ValueError("too small")), reason(RuntimeError("no memory")), reason(OSError())
        ('too small', 'RuntimeError: no memory', 'OSError')
    """
    text = first_line(error)
    if text == type(error).__name__ or isinstance(error, (ValueError, TypeError)):
        return text
    return f"{type(error).__name__}: {text}"


def whole_number(name: str, value: object, high: int, unit: str, low: int = 1) -> int:
    """`value` as a count from `low` to `high` of `unit`, or a `ValueError` that says which
    range. Every method option that sizes work (passes, copies, rows held at once) is bounded:
    a mistyped ``num_scales=100000`` is refused at once, not found hours later.

    Examples:
        >>> whole_number("copies", 100000, 1024, "noisy copies, each a pass of every input")
        Traceback (most recent call last):
        ...
        ValueError: copies 100000: give a whole number from 1 to 1024 (noisy copies, each a ...
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} {value!r}: give a whole number from {low} to {high} ({unit})")
    return value
