"""The commit lease: one committer at a time per output folder, and none blocked forever.

A lease is a numbered file ``_manifest/leases/<gen>.json`` that its holder *created*: only
one writer can create a given name (``storage.create_exclusive``: ``O_EXCL`` locally, a
conditional PUT ``If-None-Match: *`` on S3). To take the lease, a committer reads the
newest file; when there is none, or it is released, expired, or held by a process of this
host that no longer exists, it creates the next number. Numbers only grow, so the
generation also orders commits (``index`` files carry it). A holder that crashed blocks the
others until its lease expires (``MRCNN_LEASE_SECONDS``, default 600); one on the same host
is seen dead at once.

Work under the lease uses :func:`holding`, a ``with`` block around a :class:`Held` lease that
the work renews after each step (``tick``) and checks before its commit point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator

from tasks import storage
from tasks.failures import InvalidSetting, UserError
from tasks.tables.keys import Generation
from tasks.tables.layout import generation_of, lease_file, manifest

DEFAULT_LEASE_SECONDS = 600.0
POLL_SECONDS = 0.5


class LeaseTimeout(UserError, TimeoutError):
    """Another run held the lease for longer than we were willing to wait (transient; after
    the retries the user decides whether to wait for that run)."""


class LeaseLost(UserError, TimeoutError):
    """Our lease expired and another committer took over; the commit must not proceed (the
    next run finishes it)."""


@dataclasses.dataclass(frozen=True)
class Lease:
    """A lease held by this process."""

    output_uri: str
    generation: Generation
    token: str
    seconds: float
    renewed_at: float  # time.monotonic() of the last write


class Held:
    """The lease of a piece of work, renewed as the work makes progress."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    @property
    def generation(self) -> Generation:
        return self.lease.generation

    def tick(self) -> None:
        """Renew the lease if a third of it has passed (``keep_alive``); call after each step.

        Raises:
            LeaseLost: another committer took over.
        """
        self.lease = keep_alive(self.lease)

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is still ours (before a commit point)."""
        check(self.lease)


@contextlib.contextmanager
def holding(output_uri: str) -> Iterator[Held]:
    """Take the lease of ``output_uri`` for a ``with`` block; released however it ends.

    Raises:
        LeaseTimeout: as :func:`acquire`.
    """
    held = Held(acquire(output_uri))
    try:
        yield held
    finally:
        release(held.lease)


def lease_seconds() -> float:
    """``MRCNN_LEASE_SECONDS`` or 600: how long a lease lasts without renewal."""
    text = os.environ.get("MRCNN_LEASE_SECONDS")
    seconds = float(text) if text else DEFAULT_LEASE_SECONDS
    if seconds <= 0:
        raise InvalidSetting(f"MRCNN_LEASE_SECONDS must be positive, got {text!r}")
    return seconds


def acquire(output_uri: str, wait_seconds: float | None = None) -> Lease:
    """Take the lease of ``output_uri``, waiting while a live holder has it.

    Raises:
        LeaseTimeout: still held by someone else after ``wait_seconds`` (default: one lease
            length and a half, enough for a holder that died to expire).
    """
    seconds = lease_seconds()
    deadline = time.monotonic() + (wait_seconds if wait_seconds is not None else 1.5 * seconds)
    while True:
        newest, record = _newest(output_uri)
        if record is None or not _is_live(record):
            lease = _try_create(output_uri, Generation(newest + 1), seconds)
            if lease is not None:
                _remove_older(output_uri, lease.generation)
                return lease
            continue  # another committer created that number first: look again
        if time.monotonic() > deadline:
            raise LeaseTimeout(
                f"the results in {output_uri!r} are being committed by {record.get('host')} "
                f"pid {record.get('pid')} (lease {newest}); try again later"
            )
        time.sleep(POLL_SECONDS)


def keep_alive(lease: Lease) -> Lease:
    """Renew the lease when a third of it has passed; raise if another committer took over.

    Raises:
        LeaseLost: a newer lease exists (ours had expired).
    """
    if time.monotonic() - lease.renewed_at < lease.seconds / 3:
        return lease
    check(lease)
    storage.write_bytes(
        lease_file(lease.output_uri, lease.generation), _record(lease.token, lease.seconds)
    )
    return dataclasses.replace(lease, renewed_at=time.monotonic())


def check(lease: Lease) -> None:
    """Raise :class:`LeaseLost` unless ``lease`` is still the newest one."""
    newest, record = _newest(lease.output_uri)
    if newest != lease.generation or record is None or record.get("token") != lease.token:
        raise LeaseLost(
            f"the commit lease of {lease.output_uri!r} passed to another run "
            f"(lease {newest}) while this commit was preparing; it will be redone"
        )


def release(lease: Lease) -> None:
    """Mark the lease released (the file stays: it carries the newest generation)."""
    storage.write_bytes(
        lease_file(lease.output_uri, lease.generation), _record(lease.token, 0.0, released=True)
    )


def _newest(output_uri: str) -> tuple[Generation, dict | None]:
    """The highest lease number and its record (None when absent)."""
    ages = {
        generation_of(uri): age
        for uri, age in storage.list_ages(manifest(output_uri, "leases")).items()
    }
    ages.pop(None, None)
    if not ages:
        return Generation(0), None
    newest = max(ages)
    try:
        record = storage.read_json(lease_file(output_uri, newest), "lease")
    except FileNotFoundError:
        return newest, None
    except ValueError:  # created, not yet written: live for a lease length after creation
        left = lease_seconds() - ages[newest]
        record = {"expires_at": time.time() + left, "host": "?", "pid": "?"}
    return newest, record


def _is_live(record: dict) -> bool:
    if record.get("released") or float(record.get("expires_at", 0)) <= time.time():
        return False
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
        return _process_exists(record["pid"])
    return True


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _try_create(output_uri: str, generation: Generation, seconds: float) -> Lease | None:
    token = uuid.uuid4().hex
    if not storage.create_exclusive(lease_file(output_uri, generation), _record(token, seconds)):
        return None
    return Lease(output_uri, generation, token, seconds, time.monotonic())


def _record(token: str, seconds: float, released: bool = False) -> bytes:
    now = time.time()
    return json.dumps(
        {
            "token": token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": now + seconds,
            "released": released,
        }
    ).encode("utf-8")


def _remove_older(output_uri: str, generation: Generation) -> None:
    """Older lease files are history; the newest alone carries the number."""
    for uri in storage.list_files(manifest(output_uri, "leases"), (".json",)):
        older = generation_of(uri)
        if older is not None and older < generation:
            storage.remove(uri)
