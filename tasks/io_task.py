"""``io_task``: the Prefect task decorator of every step that reads or writes storage.

Its tasks follow the one retry policy (`tasks.failures.retry_policy`): a storage hiccup is
retried after each of ``MRCNN_RETRY_DELAYS`` (default 5 and 30 seconds); bad input, a missing
file or a refused permission fails at once. Results are not cached or persisted: these steps
pass URIs and small records, and re-running them is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.failures import retry_policy


def io_task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``@io_task(name=...)``: ``prefect.task`` with the retry policy, no cache, no persisted
    result; ``options`` are further ``prefect.task`` options (``name``, ``task_run_name``)."""
    return task(**retry_policy(), cache_policy=NO_CACHE, persist_result=False, **options)
