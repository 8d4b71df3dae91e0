"""Errors a user can fix: a setting, a file or a name they gave. Everything else is a bug.

A `UserError`'s message names the user's own setting, path or reference and says what is
wrong with it, so a command prints it as one line; any other exception is a programming error
and keeps its traceback. Each class also derives from the built-in error it refines, so
``except ValueError`` and ``except FileNotFoundError`` still catch them.

The pipeline (`tasks.failures`) adds its storage and run outcomes to these.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; its message says what and where, in one line."""


class InvalidSetting(UserError, ValueError):
    """A setting, argument or reference the user gave is not allowed (e.g. a Config value)."""


class InvalidInput(UserError, ValueError):
    """A file or document the user gave cannot be used as it is (e.g. malformed annotations,
    weights that do not fit the model)."""


class MissingInput(UserError, FileNotFoundError):
    """A file, folder or model the user named is not there."""
