"""``io_task``: the Prefect task decorator for steps that read or write storage.

A storage hiccup (see ``tasks.failures.is_transient``) is retried after 1, 4 and 10 seconds;
bad input, a missing file or a refused permission fails at once. Results are not cached or
persisted: these steps pass URIs and small records, and re-running them is cheap.
"""

from __future__ import annotations

import functools

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.failures import retry_transient

io_task = functools.partial(task, retries=3, retry_delay_seconds=[1, 4, 10],
                            retry_condition_fn=retry_transient, cache_policy=NO_CACHE,
                            persist_result=False)
