"""Which failures are the user's and which are retried: the one retry policy, run by Prefect."""

from __future__ import annotations

import builtins
import errno
import importlib
import pkgutil
from pathlib import Path

import pytest
from prefect import flow
from prefect.tasks import Task

from tasks.failures import (
    AccessDenied,
    InvalidInput,
    InvalidSetting,
    MissingInput,
    OutputNotWritable,
    StorageRefused,
    StorageUnavailable,
    UserError,
    is_transient,
    retry_delays,
    retry_policy,
    retry_transient,
)
from tasks.io_task import io_task
from tasks.tables.lease import LeaseLost, LeaseTimeout


@pytest.mark.parametrize(
    "error",
    [
        StorageUnavailable("object store did not answer"),
        ConnectionResetError(),
        TimeoutError(),
        LeaseTimeout("held by another run"),
        LeaseLost("taken over"),
        OSError(errno.EIO, "input/output error"),
        OSError("5xx from the store, no errno"),
        StorageRefused(errno.EIO, "cannot write 'x': input/output error"),
    ],
)
def test_transient_failures_are_retried(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EROFS, "Read-only"),
        NotADirectoryError(errno.ENOTDIR, "Not a directory"),
        PermissionError("access denied"),
        FileNotFoundError("no bucket"),
        OutputNotWritable("output folder is not writable"),
        StorageRefused(errno.ENOSPC, "cannot write 'x': No space left on device"),
        AccessDenied("access denied to 'x'"),
        MissingInput("input 'x' does not exist"),
        InvalidSetting("bad setting"),
        ValueError("bad input"),
        KeyError("x"),
        RuntimeError("a bug"),
    ],
)
def test_what_a_retry_cannot_fix_fails_at_once(error):
    assert not is_transient(error)


def test_user_errors_are_still_the_built_in_errors_they_refine():
    assert issubclass(InvalidSetting, ValueError) and issubclass(InvalidInput, ValueError)
    assert issubclass(MissingInput, FileNotFoundError)
    assert issubclass(AccessDenied, PermissionError) and issubclass(StorageRefused, OSError)
    for kind in (
        InvalidSetting,
        InvalidInput,
        MissingInput,
        AccessDenied,
        StorageRefused,
        OutputNotWritable,
        StorageUnavailable,
        LeaseTimeout,
    ):
        assert issubclass(kind, UserError), kind
    assert not issubclass(KeyError, UserError) and not issubclass(TypeError, UserError)


def test_retry_delays_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MRCNN_RETRY_DELAYS", raising=False)
    assert retry_delays() == [5.0, 30.0]
    monkeypatch.setenv("MRCNN_RETRY_DELAYS", "1, 2.5")
    assert retry_delays() == [1.0, 2.5]
    assert retry_policy() == {
        "retries": 2,
        "retry_delay_seconds": [1.0, 2.5],
        "retry_condition_fn": retry_transient,
    }
    monkeypatch.setenv("MRCNN_RETRY_DELAYS", "")
    assert retry_delays() == [] and retry_policy()["retries"] == 0
    for bad in ("soon", "-1"):
        monkeypatch.setenv("MRCNN_RETRY_DELAYS", bad)
        with pytest.raises(InvalidSetting, match="MRCNN_RETRY_DELAYS"):
            retry_delays()


def _run_in_flow(failures: list[BaseException]) -> tuple[int | BaseException, int]:
    """An ``io_task`` that raises ``failures`` one per call, run in a flow: what the flow
    returned (the successful call's number) or raised, and how often the task ran."""
    calls: list[int] = []

    def step() -> int:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return len(calls)

    flaky = io_task(name="flaky-step")(step)

    @flow(name="retry-policy-check")
    def run() -> int:
        return flaky()

    try:
        return run(), len(calls)
    except Exception as error:  # the test compares what was raised
        return error, len(calls)


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_retries_a_transient_failure_and_fails_a_permanent_one_at_once(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("MRCNN_RETRY_DELAYS", "0,0")  # read when the task is declared
    assert _run_in_flow([ConnectionResetError("reset"), TimeoutError("slow")]) == (3, 3)
    refused = OutputNotWritable("output 'x' is not writable")
    assert _run_in_flow([refused] * 3) == (refused, 1)
    unreachable = StorageUnavailable("no answer")
    assert _run_in_flow([unreachable] * 3) == (unreachable, 3)  # the try and both retries
    monkeypatch.setenv("MRCNN_RETRY_DELAYS", "")
    assert _run_in_flow([unreachable]) == (unreachable, 1)


def _pipeline_tasks() -> list[Task]:
    found = []
    for package in ("tasks", "flows"):
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, f"{package}."):
            loaded = importlib.import_module(module.name)
            found += [
                value
                for value in vars(loaded).values()
                if isinstance(value, Task) and value.__module__ == module.name
            ]
    return found


def test_every_task_that_retries_follows_the_one_policy():
    """No task of the pipeline sets its own retries, delays or condition."""
    policy = retry_policy()
    retrying = [task for task in _pipeline_tasks() if task.retries]
    names = {task.name for task in retrying}
    assert {
        "resolve-model",
        "check-output",
        "commit-results",
        "list-images",
        "process-shard",
        "write-training-report",
        "convert-source",
    } <= names
    for task in retrying:
        assert (task.retries, task.retry_delay_seconds, task.retry_condition_fn) == (
            policy["retries"],
            policy["retry_delay_seconds"],
            retry_transient,
        ), task.name


def test_the_failures_page_lists_each_user_error_with_the_built_in_it_refines():
    import tasks.failures
    import tasks.tables.lease

    page = (Path(__file__).resolve().parents[2] / "docs/concepts/failures.md").read_text(
        encoding="utf-8"
    )
    table = page.split("| kind | built-in it refines | for |\n|---|---|---|\n")[1]
    rows = table.split("\n\n")[0].splitlines()
    listed = {}
    for row in rows:
        kinds, built_in = row.split("|")[1:3]
        for kind in kinds.replace("`", "").split(","):
            listed[kind.strip()] = built_in.strip().strip("`")
    module_errors = {
        name: value
        for module in (tasks.failures, tasks.tables.lease)
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, UserError) and value is not UserError
    }
    assert set(listed) == set(module_errors)
    for name, built_in in listed.items():
        assert issubclass(module_errors[name], getattr(builtins, built_in)), name
