"""Bytes in and out of any fsspec URI: local paths, ``file://``, ``memory://`` and ``s3://``.

This is the only module that imports fsspec/s3fs; everything else passes URIs (strings).
For ``s3://`` the credentials and endpoint come from explicit options or, at call time, from
the standard environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` /
``FSSPEC_S3_ENDPOINT_URL``. Options are never logged or put in error messages.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

StorageOptions = Mapping[str, Any] | None

_S3_PROTOCOLS = ("s3", "s3a")
_ENDPOINT_VARIABLES = ("FSSPEC_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def protocol_of(uri: str) -> str:
    """The URI's scheme (``"file"`` for plain paths)."""
    scheme, sep, _ = str(uri).partition("://")
    return scheme.lower() if sep else "file"


def is_local(uri: str) -> bool:
    """True for plain paths and ``file://`` URIs."""
    return protocol_of(uri) in ("file", "local")


def _s3_options(options: StorageOptions) -> dict[str, Any]:
    """Explicit options over the environment, read now (not at import) so tests can set it.

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
    explicit = dict(options or {})
    if "key" in explicit or "secret" in explicit or "anon" in explicit:
        for name in ("key", "secret", "token"):
            resolved.pop(name, None)
    if "endpoint_url" in explicit or "endpoint_url" in explicit.get("client_kwargs", {}):
        resolved.pop("endpoint_url", None)
    return {**resolved, **explicit}


def filesystem_for(uri: str, options: StorageOptions = None) -> AbstractFileSystem:
    """The fsspec filesystem that serves ``uri``.

    Args:
        uri: a local path or a URI such as ``s3://bucket/prefix``.
        options: storage options for the filesystem (e.g. s3fs's ``key``, ``secret``,
            ``endpoint_url``); for s3 they override the environment.

    Returns:
        A (cached) fsspec filesystem instance.
    """
    protocol = protocol_of(uri)
    kwargs = _s3_options(options) if protocol in _S3_PROTOCOLS else dict(options or {})
    return fsspec.filesystem(protocol, **kwargs)


def _resolve(uri: str, options: StorageOptions) -> tuple[AbstractFileSystem, str]:
    fs = filesystem_for(uri, options)
    return fs, fs._strip_protocol(str(uri))


def _as_uri(fs: AbstractFileSystem, path: str) -> str:
    """Back from a filesystem path to a URI; local files stay plain absolute paths."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


@contextmanager
def _described(uri: str) -> Iterator[None]:
    """Name the URI when access is refused; s3fs alone often says only "Forbidden"."""
    try:
        yield
    except PermissionError as error:
        hint = ("check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the storage options"
                if protocol_of(uri) in _S3_PROTOCOLS else "check the file permissions")
        raise PermissionError(f"access denied to {uri!r} ({error}); {hint}") from error


def join(base: str, *parts: str) -> str:
    """Join URI path segments with ``/`` (also for local paths; no normalisation)."""
    joined = str(base)
    for part in parts:
        part = str(part).strip("/")
        if part:
            joined = joined.rstrip("/") + "/" + part
    return joined


def relative_path(uri: str, root: str, options: StorageOptions = None) -> str:
    """Path of ``uri`` below ``root`` with ``/`` separators.

    Raises:
        ValueError: if ``uri`` is not inside ``root``.
    """
    fs, path = _resolve(uri, options)
    root_path = fs._strip_protocol(str(root)).rstrip("/")
    if not path.startswith(root_path + "/"):
        raise ValueError(f"{uri!r} is not inside {root!r}")
    return path[len(root_path) + 1:]


def is_inside(uri: str, root: str, options: StorageOptions = None) -> bool:
    """True if ``uri`` is ``root`` itself or lies below it (same filesystem)."""
    if protocol_of(uri) != protocol_of(root):
        return False
    fs, path = _resolve(uri, options)
    root_path = fs._strip_protocol(str(root)).rstrip("/")
    return path.rstrip("/") == root_path or path.startswith(root_path + "/")


def exists(uri: str, options: StorageOptions = None) -> bool:
    """True if a file or folder exists at ``uri``."""
    fs, path = _resolve(uri, options)
    with _described(uri):
        return fs.exists(path)


def is_file(uri: str, options: StorageOptions = None) -> bool:
    """True if a file (not a folder) exists at ``uri``."""
    fs, path = _resolve(uri, options)
    with _described(uri):
        return fs.isfile(path)


def read_bytes(uri: str, options: StorageOptions = None) -> bytes:
    """The whole content of the file at ``uri``.

    Raises:
        FileNotFoundError: if there is no file at ``uri``.
        PermissionError: if access is refused (message names the URI, never credentials).
    """
    fs, path = _resolve(uri, options)
    with _described(uri):
        return fs.cat_file(path)


@contextmanager
def open_file(uri: str, mode: str = "rb", options: StorageOptions = None) -> Iterator[IO]:
    """Open ``uri`` as a file object (for streaming readers and writers such as Parquet)."""
    fs, path = _resolve(uri, options)
    with _described(uri):
        if "w" in mode and isinstance(fs, LocalFileSystem):
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, mode) as handle:
            yield handle


def write_bytes(uri: str, data: bytes, options: StorageOptions = None) -> str:
    """Write ``data`` to ``uri``, creating parent folders, without leaving partial files.

    Local files are written under a temporary name in the same folder and renamed, so a
    reader never sees half a file. An object store's single PUT is already all-or-nothing,
    so there the object is written directly (a copy + delete would double the traffic).

    Returns:
        ``uri``.
    """
    fs, path = _resolve(uri, options)
    with _described(uri):
        if not isinstance(fs, LocalFileSystem):
            fs.pipe_file(path, bytes(data))
            return uri
        folder, name = posixpath.split(path)
        fs.makedirs(folder, exist_ok=True)
        temporary = posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            fs.pipe_file(temporary, bytes(data))
            os.replace(temporary, path)
        finally:
            if fs.exists(temporary):
                fs.rm_file(temporary)
    return uri


def copy_file(source: str, destination: str, source_options: StorageOptions = None,
              destination_options: StorageOptions = None) -> str:
    """Copy one file, also between filesystems (e.g. a local file to ``s3://``).

    Returns:
        ``destination``.
    """
    return write_bytes(destination, read_bytes(source, source_options), destination_options)


def list_files(uri: str, suffixes: Sequence[str] = (), options: StorageOptions = None) -> list[str]:
    """All files below ``uri`` (recursively), sorted, as URIs of the same kind.

    Args:
        uri: folder to list.
        suffixes: keep only names ending in one of these (case-insensitive), e.g. ``(".json",)``.

    Returns:
        Sorted URIs; empty when the folder is empty or missing.
    """
    fs, path = _resolve(uri, options)
    wanted = tuple(suffix.lower() for suffix in suffixes)
    with _described(uri):
        found = fs.find(path, withdirs=False)
    return sorted(_as_uri(fs, name) for name in found
                  if not wanted or name.lower().endswith(wanted))


def remove(uri: str, options: StorageOptions = None) -> None:
    """Delete a file or a folder tree; a missing ``uri`` is not an error."""
    fs, path = _resolve(uri, options)
    with _described(uri):
        if fs.exists(path):
            fs.rm(path, recursive=True)
