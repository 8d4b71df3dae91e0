"""Where the batch-inference shards run: the flow's own thread pool, or a Dask cluster.

``dask_address`` is a plain string, so a deployment can choose it per run (Prefect records
parameters, and an address holds no secret):

- ``None``: the flow's own task runner, a thread pool in the flow's process (or whatever
  ``batch_inference.with_options(task_runner=...)`` set);
- ``"tcp://host:8786"`` (any ``dask.distributed`` address): an existing scheduler, through
  ``prefect_dask.DaskTaskRunner``; its workers need this project installed and the storage
  credentials in their environment;
- ``"local:N"``: a temporary ``distributed.LocalCluster`` of N worker processes on this
  machine, one task thread each, torn down when the shards are done.

Each worker process keeps one built model (``tasks.models.build``), so a
cluster of W workers loads the model W times per run, whatever the number of shards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner

from tasks.failures import InvalidSetting

LOCAL_PREFIX = "local:"


def dask_task_runner(address: str) -> TaskRunner:
    """A ``DaskTaskRunner`` for a scheduler address or a ``local:N`` cluster (not started).

    Also usable directly: ``batch_inference.with_options(task_runner=dask_task_runner(a))``.

    Args:
        address: ``local:N`` (N >= 1 worker processes on this machine, loopback only, no
            dashboard), else a scheduler address such as ``tcp://10.0.0.5:8786``.

    Raises:
        ValueError: an empty address or a malformed ``local:N``.
    """
    from prefect_dask import DaskTaskRunner

    if not address or not address.strip():
        raise InvalidSetting(
            "dask_address must be a scheduler address such as "
            "'tcp://10.0.0.5:8786' or 'local:N', got an empty string"
        )
    if address == "local" or address.startswith(LOCAL_PREFIX):
        workers = _local_workers(address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_settings(workers)
        )
    return DaskTaskRunner(address=address)


def local_cluster_settings(workers: int) -> dict[str, Any]:
    """``LocalCluster`` arguments for ``local:N``: N processes sharing this machine's cores.

    One task thread per worker (a shard already overlaps its own I/O with compute), and each
    worker's TensorFlow and OpenMP pools sized to its share of the cores, so N models do not
    each start one thread per core.
    """
    threads = str(max(1, _usable_cores() // workers))
    return {
        "n_workers": workers,
        "processes": True,
        "threads_per_worker": 1,
        "host": "127.0.0.1",
        "dashboard_address": None,
        "env": {"TF_NUM_INTRAOP_THREADS": threads, "OMP_NUM_THREADS": threads},
    }


@contextlib.contextmanager
def shard_task_runner(dask_address: str | None) -> Iterator[TaskRunner]:
    """The started task runner to ``map`` shards onto, for the duration of the block.

    Args:
        dask_address: see the module docstring; None keeps the running flow's own runner.

    Raises:
        RuntimeError: called outside a flow run with ``dask_address`` None.
    """
    if dask_address is None:
        context = FlowRunContext.get()
        if context is None:
            raise RuntimeError("shard_task_runner(None) must run inside a flow run")
        yield context.task_runner
        return
    with dask_task_runner(dask_address) as runner:
        yield runner


def _local_workers(address: str) -> int:
    count = address[len(LOCAL_PREFIX) :]
    if not count.isdigit() or int(count) < 1:
        raise InvalidSetting(
            f"dask_address {address!r}: a local cluster is 'local:N' with N >= 1 "
            "worker processes, e.g. 'local:2'"
        )
    return int(count)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
