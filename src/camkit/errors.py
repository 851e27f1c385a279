"""The one warning category camkit emits, so users can filter or escalate it."""


class CamkitWarning(UserWarning):
    """A map was computed but may not mean what you expect (constant map, training mode, ...).

    Examples:
        >>> import warnings, camkit
        >>> warnings.simplefilter("error", camkit.CamkitWarning)  # make them fatal in a test suite
    """
