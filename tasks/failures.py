"""Which failures are worth retrying, and the errors that say a store cannot be used.

Retry only what can pass by itself: a store that does not answer, throttling, a 5xx, a
timeout. A refused permission, a full or read-only disk, a file where a folder should be, a
missing bucket, bad input or a bug fail at once: retrying them only delays the message.
"""

from __future__ import annotations

import errno
import os
from typing import Any

# OS errors a retry cannot fix.
PERMANENT_ERRNOS = frozenset({
    errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
    errno.EDQUOT, errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG,
})
_PERMANENT_TYPES = (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                    FileExistsError, ValueError, TypeError, KeyError)
_DEFAULT_RETRY_DELAYS = (5.0, 30.0)


class StorageUnavailable(OSError):
    """An object store did not answer (connection refused, reset, timed out)."""


class OutputNotWritable(OSError):
    """The output folder cannot take files (read-only, full, refused, not a folder)."""


class RunIncomplete(RuntimeError):
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


def with_retries(prefect_task: Any) -> Any:
    """A Prefect task retried after each of :func:`retry_delays` (read now, at call time)."""
    delays = retry_delays()
    return prefect_task.with_options(retries=len(delays), retry_delay_seconds=delays or 0)


def retry_delays() -> list[float]:
    """Seconds to wait before each retry of a storage step: ``MRCNN_RETRY_DELAYS``
    (comma-separated, e.g. ``5,30``; empty for no retries), default 5 then 30."""
    text = os.environ.get("MRCNN_RETRY_DELAYS")
    if text is None:
        return list(_DEFAULT_RETRY_DELAYS)
    try:
        delays = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"MRCNN_RETRY_DELAYS must be comma-separated seconds, got {text!r}"
                         ) from None
    if any(delay < 0 for delay in delays):
        raise ValueError(f"MRCNN_RETRY_DELAYS must not be negative, got {text!r}")
    return delays
