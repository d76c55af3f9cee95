"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class ModelTailorError(Exception):
    """Base class: something the user can fix, explained in the message."""


class DataError(ModelTailorError):
    """The data cannot be used as given (names the folder/file and what is wrong)."""


class BackboneError(ModelTailorError):
    """A backbone is unknown, not installed, or cannot do what was asked."""


class RunError(ModelTailorError):
    """A run directory is missing, incomplete or from an incompatible version."""
