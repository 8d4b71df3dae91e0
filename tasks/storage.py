"""Bytes in and out of any fsspec URI: local paths, ``file://``, ``memory://`` and ``s3://``.

This is the only module that imports fsspec/s3fs; everything else passes URIs (strings).
For ``s3://`` the credentials and endpoint come, at call time, from the standard
environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` / ``FSSPEC_S3_ENDPOINT_URL`` (else botocore's
own chain). Credentials are never logged or put in error messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import posixpath
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from tasks.failures import (
    AccessDenied,
    InvalidInput,
    MissingInput,
    OutputNotWritable,
    StorageRefused,
    StorageUnavailable,
)
from tasks.faults import crash_point

_S3_PROTOCOLS = ("s3", "s3a")
_ENDPOINT_VARIABLES = ("FSSPEC_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def protocol_of(uri: str) -> str:
    """The URI's scheme (``"file"`` for plain paths)."""
    scheme, sep, _ = str(uri).partition("://")
    return scheme.lower() if sep else "file"


def is_local(uri: str) -> bool:
    """True for plain paths and ``file://`` URIs."""
    return protocol_of(uri) in ("file", "local")


def _s3_options() -> dict[str, Any]:
    """s3fs options from the environment, read now (not at import) so tests can set it.

    Passing key/secret explicitly also keys fsspec's instance cache on them: a changed
    environment gives a new client instead of a cached one holding old credentials.
    """
    env = os.environ
    resolved: dict[str, Any] = {}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        resolved.update(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"])
        if env.get("AWS_SESSION_TOKEN"):
            resolved["token"] = env["AWS_SESSION_TOKEN"]
    endpoint = next((env[name] for name in _ENDPOINT_VARIABLES if env.get(name)), None)
    if endpoint:
        resolved["endpoint_url"] = endpoint
    # Listings must be fresh: fsspec keeps one s3fs instance per thread, each with its own
    # listing cache, and the commit protocol decides from listings what other threads wrote.
    resolved["use_listings_cache"] = False
    return resolved


@dataclasses.dataclass(frozen=True)
class StoreDescription:
    """Where a URI's bytes go, as ``mrcnn-pipeline doctor`` reports it (never a secret).

    Attributes:
        protocol: ``file``, ``s3``, ``memory`` ...
        endpoint: an object store's endpoint URL; None for local paths and for AWS's
            default endpoint.
        credentials: where an object store's credentials come from (``environment`` or
            botocore's source such as ``shared-credentials-file``); None when none are
            found (and for stores that need none).
    """

    protocol: str
    endpoint: str | None = None
    credentials: str | None = None


def describe_store(uri: str) -> StoreDescription:
    """The store behind ``uri``: its endpoint and the source of its credentials, looked up
    the way :func:`filesystem_for` would use them (botocore's chain after the environment)."""
    protocol = protocol_of(uri)
    if protocol not in _S3_PROTOCOLS:
        return StoreDescription(protocol)
    resolved = _s3_options()
    endpoint = resolved.get("endpoint_url")
    if "key" in resolved:
        source: str | None = "environment"
    else:
        import botocore.session

        found = botocore.session.Session().get_credentials()
        source = found.method if found is not None else None
    return StoreDescription(protocol, endpoint, source)


def filesystem_for(uri: str) -> AbstractFileSystem:
    """The fsspec filesystem that serves ``uri``.

    Args:
        uri: a local path or a URI such as ``s3://bucket/prefix``.

    Returns:
        A (cached) fsspec filesystem instance.
    """
    protocol = protocol_of(uri)
    kwargs = _s3_options() if protocol in _S3_PROTOCOLS else {}
    return fsspec.filesystem(protocol, **kwargs)


def _resolve(uri: str) -> tuple[AbstractFileSystem, str]:
    fs = filesystem_for(uri)
    return fs, fs._strip_protocol(str(uri))


def _as_uri(fs: AbstractFileSystem, path: str) -> str:
    """Back from a filesystem path to a URI; local files stay plain absolute paths."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


@contextmanager
def _described(uri: str, fs: AbstractFileSystem | None = None) -> Iterator[None]:
    """Errors that name the user's URI: access refused (s3fs alone often says only
    "Forbidden") and an object store that does not answer (botocore names only its URL)."""
    try:
        yield
    except PermissionError as error:
        hint = (
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
            if protocol_of(uri) in _S3_PROTOCOLS
            else "check the file permissions"
        )
        raise AccessDenied(f"access denied to {uri!r} ({error}); {hint}") from error
    except Exception as error:  # only connection failures are translated
        if not _is_connection_failure(error):
            raise
        endpoint = getattr(fs, "endpoint_url", None) or "the object store"
        raise StorageUnavailable(
            f"object store {endpoint} did not answer for {uri!r}: {error}"
        ) from error


_CONNECTION_FAILURES = (
    "ConnectionError",
    "HTTPClientError",
    "ClientConnectionError",
    "ServerTimeoutError",
)


def _is_connection_failure(error: BaseException) -> bool:
    """botocore's and aiohttp's "could not connect / connection lost / timed out" errors."""
    return any(
        kind.__module__.split(".")[0] in ("botocore", "aiohttp")
        and kind.__name__ in _CONNECTION_FAILURES
        for kind in type(error).__mro__
    )


def join(base: str, *parts: str) -> str:
    """Join URI path segments with ``/`` (also for local paths; no normalisation)."""
    joined = str(base)
    for part in parts:
        part = str(part).strip("/")
        if part:
            joined = joined.rstrip("/") + "/" + part
    return joined


def relative_path(uri: str, root: str) -> str:
    """Path of ``uri`` below ``root`` with ``/`` separators.

    Raises:
        ValueError: if ``uri`` is not inside ``root``.
    """
    fs, path = _resolve(uri)
    root_path = fs._strip_protocol(str(root)).rstrip("/")
    if not path.startswith(root_path + "/"):
        raise ValueError(f"{uri!r} is not inside {root!r}")
    return path[len(root_path) + 1 :]


def is_inside(uri: str, root: str) -> bool:
    """True if ``uri`` is ``root`` itself or lies below it (same filesystem)."""
    if protocol_of(uri) != protocol_of(root):
        return False
    fs, path = _resolve(uri)
    root_path = fs._strip_protocol(str(root)).rstrip("/")
    return path.rstrip("/") == root_path or path.startswith(root_path + "/")


def exists(uri: str) -> bool:
    """True if a file or folder exists at ``uri``."""
    fs, path = _resolve(uri)
    with _described(uri, fs):
        return fs.exists(path)


def is_file(uri: str) -> bool:
    """True if a file (not a folder) exists at ``uri``."""
    fs, path = _resolve(uri)
    with _described(uri, fs):
        return fs.isfile(path)


def read_bytes(uri: str) -> bytes:
    """The whole content of the file at ``uri``.

    Raises:
        FileNotFoundError: if there is no file at ``uri``.
        PermissionError: if access is refused (message names the URI, never credentials).
    """
    fs, path = _resolve(uri)
    with _described(uri, fs):
        return fs.cat_file(path)


def read_json(uri: str, what: str) -> Any:
    """Parse the JSON file at ``uri``; errors name ``what`` (e.g. "model config") and the URI.

    Raises:
        FileNotFoundError: nothing at ``uri``.
        ValueError: the file is not valid JSON.
    """
    try:
        return json.loads(read_bytes(uri))
    except FileNotFoundError:
        raise MissingInput(f"{what} {uri!r} not found") from None
    except ValueError as error:
        raise InvalidInput(f"{what} {uri!r} is not valid JSON: {error}") from None


def write_bytes(uri: str, data: bytes) -> str:
    """Write ``data`` to ``uri``, creating parent folders, without leaving partial files.

    Local files are written under a temporary name in the same folder and renamed, so a
    reader never sees half a file. An object store's single PUT is already all-or-nothing,
    so there the object is written directly (a copy + delete would double the traffic).
    A process killed mid-write leaves a hidden ``.<name>.<hex>.tmp`` that the results
    commit removes once it is old (``tasks.tables.cleanup``).

    Returns:
        ``uri``.

    Raises:
        OSError: naming ``uri`` (never the temporary name), with the system's errno.
    """
    fs, path = _resolve(uri)
    with _described(uri, fs):
        if not isinstance(fs, LocalFileSystem):
            fs.pipe_file(path, bytes(data))
            return uri
        folder, name = posixpath.split(path)
        temporary = posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            fs.makedirs(folder, exist_ok=True)
            fs.pipe_file(temporary, bytes(data))
            crash_point("temporary-written", path)
            os.replace(temporary, path)
        except OSError as error:
            raise _local_write_error(uri, error) from None
        finally:
            if os.path.lexists(temporary):
                os.remove(temporary)
    return uri


def _local_write_error(uri: str, error: OSError) -> OSError:
    """The error naming the user's path instead of a temporary file, with its errno: a
    refused permission or write (full, read-only, not a folder) is the user's to fix; a path
    that vanished while being written keeps its own type."""
    reason = error.strerror or str(error)
    if isinstance(error, FileNotFoundError):
        return type(error)(error.errno, f"cannot write {uri!r}: {reason}")
    kind = AccessDenied if isinstance(error, PermissionError) else StorageRefused
    return kind(error.errno, f"cannot write {uri!r}: {reason}")


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create a file only if nothing exists at ``uri``; False when another writer was first.

    Locally ``os.open(O_CREAT | O_EXCL)``; on S3 a conditional PUT (``If-None-Match: *``,
    s3fs ``mode="create"``), which AWS S3 and SeaweedFS refuse when the object exists.
    """
    fs, path = _resolve(uri)
    with _described(uri, fs):
        if isinstance(fs, LocalFileSystem):
            return _create_local_exclusive(uri, path, data)
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except OSError:  # s3: 412 Precondition Failed when the object already exists
            fs.invalidate_cache(path)
            if fs.exists(path):
                return False
            raise
    return True


def _create_local_exclusive(uri: str, path: str, data: bytes) -> bool:
    try:
        os.makedirs(posixpath.dirname(path), exist_ok=True)
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as error:
        raise _local_write_error(uri, error) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)  # one small write: a reader sees all of it or an empty file
    except OSError as error:  # e.g. a full disk: the name must not stay taken by nothing
        os.remove(path)
        raise _local_write_error(uri, error) from None
    return True


def move(source: str, destination: str) -> str:
    """Move a file within one filesystem; done again after a crash, it finishes the move.

    Locally an atomic ``os.replace``; on an object store a server-side copy (readers see the
    whole object or none) and then the source's deletion. A missing source with the
    destination present is a move already done.

    Returns:
        ``destination``.

    Raises:
        FileNotFoundError: neither the source nor the destination exists.
    """
    fs, source_path = _resolve(source)
    destination_path = fs._strip_protocol(str(destination))
    with _described(source, fs):
        if isinstance(fs, LocalFileSystem):
            try:
                os.makedirs(posixpath.dirname(destination_path), exist_ok=True)
                os.replace(source_path, destination_path)
            except FileNotFoundError:
                if not os.path.exists(destination_path):
                    raise FileNotFoundError(
                        f"cannot move {source!r}: it is gone and {destination!r} does not exist"
                    ) from None
            except OSError as error:
                raise _local_write_error(destination, error) from None
            return destination
        if fs.exists(source_path):
            fs.copy(source_path, destination_path)
            fs.rm_file(source_path)
        elif not fs.exists(destination_path):
            raise FileNotFoundError(
                f"cannot move {source!r}: it is gone and {destination!r} does not exist"
            )
    return destination


def probe_writable(uri: str, *, keep_folders: bool = True) -> None:
    """Write and delete a small object below ``uri``, before any expensive work.

    A failed probe leaves nothing behind: the local folders it made (``uri`` itself when it
    was missing, and ``uri/_manifest``) are removed again.

    Args:
        keep_folders: after a successful probe, keep those folders (batch inference's
            tables live there next); False removes them too, for outputs without a
            ``_manifest``.

    Raises:
        OutputNotWritable: read-only, full, refused or not a folder; one line naming ``uri``.
        StorageUnavailable: the object store did not answer.
    """
    probe = join(uri, "_manifest", f"probe-{uuid.uuid4().hex}")
    fs, path = _resolve(probe)
    local = isinstance(fs, LocalFileSystem)
    tidy = _probe_removed(path, keep_folders) if local else nullcontext()
    try:
        with _described(uri, fs), tidy:
            if local:
                os.makedirs(posixpath.dirname(path), exist_ok=True)
            fs.pipe_file(path, b"probe")
            fs.rm_file(path)
    except (StorageUnavailable, PermissionError):
        raise  # their messages already name the URI and what to check
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputNotWritable(f"output folder {uri!r} is not writable: {reason}") from None


@contextmanager
def _probe_removed(path: str, keep_folders: bool) -> Iterator[None]:
    """Remove the local probe file ``path`` and the folders made for it (its parents that
    are missing on entry) if the probe fails, or also after success unless ``keep_folders``;
    only where they are still empty."""
    made, folder = [], os.path.dirname(path)
    while not os.path.lexists(folder) and folder != os.path.dirname(folder):
        made.append(folder)  # deepest first
        folder = os.path.dirname(folder)
    try:
        yield
    except BaseException:
        _remove_empty(path, made)
        raise
    if not keep_folders:
        _remove_empty(path, made)


def _remove_empty(path: str, folders: list[str]) -> None:
    for leftover, remove in [(path, os.remove), *((folder, os.rmdir) for folder in folders)]:
        try:
            remove(leftover)
        except OSError:
            pass  # never made, not empty (another writer's), or not removable: leave it


def copy_file(source: str, destination: str) -> str:
    """Copy one file, also between filesystems (e.g. a local file to ``s3://``).

    Returns:
        ``destination``.
    """
    return write_bytes(destination, read_bytes(source))


def list_files(uri: str, suffixes: Sequence[str] = ()) -> list[str]:
    """All files below ``uri`` (recursively), sorted, as URIs of the same kind.

    Args:
        uri: folder to list.
        suffixes: keep only names ending in one of these (case-insensitive), e.g. ``(".json",)``.

    Returns:
        Sorted URIs; empty when the folder is empty or missing.
    """
    fs, path = _resolve(uri)
    wanted = tuple(suffix.lower() for suffix in suffixes)
    with _described(uri, fs):
        found = _below(path, fs.find(path, withdirs=False))
    return sorted(
        _as_uri(fs, name) for name in found if not wanted or name.lower().endswith(wanted)
    )


def list_ages(uri: str, depth: int | None = None) -> dict[str, float]:
    """Files below ``uri`` (``depth`` levels, default all) and their age in seconds since
    they were last modified; empty when the folder is missing."""
    fs, path = _resolve(uri)
    with _described(uri, fs):
        found = fs.find(path, maxdepth=depth, withdirs=False, detail=True)
    now = time.time()
    return {_as_uri(fs, name): now - _modified(found[name], now) for name in _below(path, found)}


def list_sizes(uri: str, suffixes: Sequence[str] = ()) -> dict[str, int]:
    """Files below ``uri`` (recursively) and their sizes in bytes; empty when it is missing.

    Args:
        uri: folder to list.
        suffixes: keep only names ending in one of these (case-insensitive).
    """
    fs, path = _resolve(uri)
    wanted = tuple(suffix.lower() for suffix in suffixes)
    with _described(uri, fs):
        found = fs.find(path, withdirs=False, detail=True)
    return {
        _as_uri(fs, name): int(found[name].get("size") or 0)
        for name in _below(path, found)
        if not wanted or name.lower().endswith(wanted)
    }


def _below(path: str, names: Iterable[str]) -> list[str]:
    """Names strictly below ``path``: some stores (SeaweedFS) list an emptied folder as an
    object named like the folder itself."""
    prefix = path.rstrip("/") + "/"
    return [name for name in names if name.startswith(prefix)]


def _modified(info: Mapping[str, Any], now: float) -> float:
    stamp = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if isinstance(stamp, datetime.datetime):
        return stamp.timestamp()
    return float(stamp) if stamp else now


def remove(uri: str) -> None:
    """Delete a file or a folder tree; a missing ``uri`` is not an error."""
    fs, path = _resolve(uri)
    with _described(uri, fs):
        if fs.exists(path):
            fs.rm(path, recursive=True)
