"""The one exception type the command line turns into a clear message and a non-zero exit."""


class RohydrError(Exception):
    """A user-facing error: the message names the file, split, key, what was found and expected."""


class NonFiniteError(RohydrError):
    """Predictions, losses or weights that are NaN or infinite: never scored, never saved as a result."""
