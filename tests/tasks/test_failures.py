"""Which failures are retried: transient ones only; and the retry delays setting."""

from __future__ import annotations

import errno

import pytest
from prefect import task

from tasks.failures import (OutputNotWritable, StorageUnavailable, is_transient, retry_delays,
                            with_retries)
from tasks.tables.lease import LeaseLost, LeaseTimeout


@pytest.mark.parametrize("error", [
    StorageUnavailable("object store did not answer"), ConnectionResetError(), TimeoutError(),
    LeaseTimeout("held by another run"), LeaseLost("taken over"),
    OSError(errno.EIO, "input/output error"), OSError("5xx from the store, no errno")])
def test_transient_failures_are_retried(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EROFS, "Read-only"),
    NotADirectoryError(errno.ENOTDIR, "Not a directory"), PermissionError("access denied"),
    FileNotFoundError("no bucket"), OutputNotWritable("output folder is not writable"),
    ValueError("bad input"), KeyError("x"), RuntimeError("a bug")])
def test_what_a_retry_cannot_fix_fails_at_once(error):
    assert not is_transient(error)


def test_retry_delays_come_from_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MRCNN_RETRY_DELAYS", raising=False)
    assert retry_delays() == [5.0, 30.0]
    monkeypatch.setenv("MRCNN_RETRY_DELAYS", "1, 2.5")
    assert retry_delays() == [1.0, 2.5]

    @task
    def step() -> None:
        pass
    assert (with_retries(step).retries, with_retries(step).retry_delay_seconds) == (2, [1.0, 2.5])
    monkeypatch.setenv("MRCNN_RETRY_DELAYS", "")
    assert retry_delays() == [] and with_retries(step).retries == 0
    for bad in ("soon", "-1"):
        monkeypatch.setenv("MRCNN_RETRY_DELAYS", bad)
        with pytest.raises(ValueError, match="MRCNN_RETRY_DELAYS"):
            retry_delays()
