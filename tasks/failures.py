"""Which failures are the user's to fix, which are worth retrying, and the one retry policy.

User errors (`UserError` and its kinds: those of `mrcnn.errors`, and the storage and run
outcomes below) carry a message that names the user's own setting, path or store; a command
prints it as one line. Any other exception is a bug and keeps its traceback.

Retry only what can pass by itself: a store that does not answer, throttling, a 5xx, a
timeout. A refused permission, a full or read-only disk, a file where a folder should be, a
missing bucket, bad input or a bug fail at once: retrying them only delays the message.
Every Prefect task that retries takes `retry_policy()` (through `tasks.io_task.io_task`);
docs/concepts/failures.md says what that means for a run.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from mrcnn.errors import InvalidInput, InvalidSetting, MissingInput, UserError

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "InvalidInput",
    "InvalidSetting",
    "MissingInput",
    "OutputNotWritable",
    "RunIncomplete",
    "StorageRefused",
    "StorageUnavailable",
    "UserError",
    "is_transient",
    "retry_delays",
    "retry_policy",
    "retry_transient",
]

# OS errors a retry cannot fix.
PERMANENT_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ENOSPC,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EDQUOT,
        errno.ENOENT,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.EFBIG,
    }
)
_PERMANENT_TYPES = (
    PermissionError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    ValueError,
    TypeError,
    KeyError,
)
DEFAULT_RETRY_DELAYS = (5.0, 30.0)


class StorageUnavailable(UserError, OSError):
    """An object store did not answer (connection refused, reset, timed out), also after the
    retries."""


class AccessDenied(UserError, PermissionError):
    """Storage refused access to a URI (credentials, permissions)."""


class StorageRefused(UserError, OSError):
    """Storage refused a write: a full or read-only disk, a file where a folder should be, an
    I/O error. Keeps the system's errno, which says whether a retry may help."""


class OutputNotWritable(StorageRefused):
    """The output folder cannot take files (read-only, full, refused, not a folder)."""


class AlreadyExists(UserError, FileExistsError):
    """Something the user asked to create is there already (e.g. a run folder with
    checkpoints)."""


class RunIncomplete(UserError, RuntimeError):
    """Some shards of a batch run failed; the next run retries their images."""


def is_transient(error: BaseException | Any) -> bool:
    """True when the same call may succeed later without anyone changing anything."""
    if isinstance(error, (StorageUnavailable, TimeoutError, ConnectionError)):
        return True
    if isinstance(error, (OutputNotWritable, *_PERMANENT_TYPES)):
        return False
    if isinstance(error, OSError):
        return error.errno not in PERMANENT_ERRNOS
    return False


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task only for a transient cause."""
    if not state.is_failed():
        return False
    return is_transient(state.result(raise_on_failure=False))


def retry_delays() -> list[float]:
    """Seconds to wait before each retry: ``MRCNN_RETRY_DELAYS`` (comma-separated, e.g.
    ``5,30``; empty for no retries), default 5 then 30.

    Raises:
        InvalidSetting: the variable is not a list of non-negative numbers.
    """
    text = os.environ.get("MRCNN_RETRY_DELAYS")
    if text is None:
        return list(DEFAULT_RETRY_DELAYS)
    try:
        delays = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidSetting(
            f"MRCNN_RETRY_DELAYS must be comma-separated seconds, got {text!r}"
        ) from None
    if any(delay < 0 for delay in delays):
        raise InvalidSetting(f"MRCNN_RETRY_DELAYS must not be negative, got {text!r}")
    return delays


def retry_policy() -> dict[str, Any]:
    """The Prefect task options of the one retry policy: a transient failure
    (`is_transient`) is retried after each of `retry_delays()`, anything else fails at once.

    Read when a task is declared, so ``MRCNN_RETRY_DELAYS`` applies per process.
    """
    delays = retry_delays()
    return {
        "retries": len(delays),
        "retry_delay_seconds": delays or 0,
        "retry_condition_fn": retry_transient,
    }
