"""The one exception hierarchy of earmark.

Every error earmark raises on purpose derives from :class:`EarmarkError`. Messages name the
file, parameter or value at fault and say what to do about it.

Example
-------
>>> from earmark.errors import AudioDecodeError, EarmarkError
>>> issubclass(AudioDecodeError, (EarmarkError, ValueError))
True
"""

from __future__ import annotations

__all__ = [
    "AudioDecodeError",
    "AudioRangeWarning",
    "BundleError",
    "DatasetError",
    "EarmarkError",
    "EarmarkWarning",
    "ParameterError",
    "TrainingDataWarning",
]


class EarmarkError(Exception):
    """Root of every exception earmark raises on purpose."""


class ParameterError(EarmarkError, ValueError):
    """A parameter has a value earmark cannot use; the message names it and the fix."""


class AudioDecodeError(EarmarkError, ValueError):
    """A file cannot be turned into finite audio samples.

    Attributes
    ----------
    path : str
        The file at fault.
    reason : str
        Why it failed, in one line (without the path).
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep picklable across process pools
        return (type(self), (self.path, self.reason))


class DatasetError(EarmarkError, ValueError):
    """A dataset source (folder, manifest, pattern) cannot be read as asked."""


class BundleError(EarmarkError):
    """A model bundle is corrupt, tampered with, or of an unknown format version."""


class EarmarkWarning(UserWarning):
    """Base class of earmark's warnings."""


class MissingGroupWarning(EarmarkWarning):
    """Some rows of a grouped table have no group; each is kept as a group of its own."""


class AudioRangeWarning(EarmarkWarning):
    """Float audio outside [-1, 1] was scaled back into range."""


class SampleRateWarning(EarmarkWarning):
    """An array of samples came without its sample rate, so the model's own rate was assumed."""


class TrainingDataWarning(EarmarkWarning):
    """A model was scored on files, or on groups (speakers…), it was trained on: those scores do not
    measure how it does on new recordings."""
