"""Shards in a child process, so that a runtime that crashes costs one shard, not the run.

A native crash (a segmentation fault inside a runtime's kernels) kills the process it happens
in. `run_isolated` runs `tasks.inference.shards.run_shard` in one long-lived child process per
flow process (it keeps its built model between shards, as a worker does; shards take turns in
it, their reads and writes still overlap the model within each shard); when the child dies,
the shard is tried once more in a fresh child, and if that dies too the shard fails with
`ShardCrashed`, naming the exit signal: its images are retried by the next run, and the other
shards go on in a new child. Nothing of a crashed shard reaches the tables (a shard only stages
files; the commit takes them).
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

ATTEMPTS = 2  # a crash may be intermittent: one more try in a fresh process


class ShardCrashed(RuntimeError):
    """The process running a shard died (e.g. a segmentation fault in a runtime)."""


_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()
_one_at_a_time = threading.Lock()


def run_isolated(images: Sequence[Any], model: Any, context: Any) -> dict[str, Any]:
    """`run_shard(images, model, context)` in the child process; see the module docstring.

    Raises:
        ShardCrashed: the child died on every attempt.
    """
    from tasks.inference.shards import run_shard

    cause = "exited"
    # One shard in the child at a time: a crash then fails only the shard that caused it,
    # never one that was waiting its turn.
    with _one_at_a_time:
        for _ in range(ATTEMPTS):
            pool = _child()
            future = pool.submit(run_shard, list(images), model, context)
            processes = list((pool._processes or {}).values())  # started by submit
            try:
                return future.result()
            except BrokenProcessPool:
                cause = _exit_cause(processes)
                _discard(pool)
    raise ShardCrashed(
        f"the process running a shard of {len(images)} images died {ATTEMPTS} "
        f"times ({cause}, model {model.identity}, runtime {context.runtime}); "
        "its images are retried by the next run"
    )


def _child() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn: a fork of a process running TensorFlow's or OpenVINO's threads may hang.
            _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _exit_cause(processes: list[Any]) -> str:
    """How the child ended: ``killed by SIGSEGV``, ``exit code 1`` ..."""
    for process in processes:
        code = _exit_code(process)
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        if code is not None:
            return f"exit code {code}"
    return "exited"


def _exit_code(process: Any, seconds: float = 5.0) -> int | None:
    """The child's exit code, or None if it is still unknown after `seconds`.

    The pool notices the death before the process is reaped, and its own thread joins the
    process too: when that thread's `waitpid` wins, ours finds no child and reads None until
    the winner has recorded the code, so wait for it briefly.
    """
    deadline = time.monotonic() + seconds
    process.join(timeout=seconds)
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.exitcode
