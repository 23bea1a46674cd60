"""The project's user-facing errors.

Every error this package raises about its input (a config value, a path, an
episode set, a request) is a `GpiclError`, and also the built-in exception a
caller would expect (`InvalidInputError` is a ValueError, ...). The pipeline
scripts print a GpiclError as one line naming the bad value (exit status 2);
anything else is a bug and keeps its traceback.
"""


class GpiclError(Exception):
    """Bad input, or a state the user has to fix (the message says which)."""


class InvalidInputError(GpiclError, ValueError):
    """A value out of range, of the wrong kind, or inconsistent with another."""


class UnknownKeyError(GpiclError, KeyError):
    """An unknown name: config section or key, preset, split."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class MissingFileError(GpiclError, FileNotFoundError):
    """A file or directory that should exist does not."""


class ExistingFileError(GpiclError, FileExistsError):
    """A file or directory that is in the way (or owned by another writer)."""


class UnavailableError(GpiclError, RuntimeError):
    """Something the run needs cannot be had here (a device, a readable state)."""
