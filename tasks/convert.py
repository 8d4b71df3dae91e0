"""Prefect tasks of mask conversion: list sources, convert one source, copy images, write.

Tasks pass URIs and small JSON-able summaries, never arrays. Only storage I/O is retried:
a transient ``OSError`` (connection reset, timeout) is worth another try, a missing file,
refused access or invalid annotation is not.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from tasks import storage
from tasks.annotations import canonical
from tasks.annotations.labels import LabelMap, parse_labels
from tasks.annotations.records import Fetch
from tasks.annotations.registry import NAMES, get_format
from tasks.failures import InvalidInput, MissingInput
from tasks.io_task import io_task

# The registered format names, so that Prefect's parameter schema offers them as choices.
Format = Literal[NAMES]  # type: ignore[valid-type]
STAGING_FOLDER = ".convert-staging"


def is_source(fmt: str, relative: str) -> bool:
    """Whether a file (path relative to the input root) is, or belongs to, a source of
    format ``fmt`` (see each format's ``matches`` in ``tasks.annotations``)."""
    return get_format(fmt).matches(relative)


@io_task(name="list-sources")
def list_sources(source: str, fmt: Format) -> tuple[str, list[str]]:
    """Find the sources: files, or folders for formats whose items are folders.

    Args:
        source: input folder URI, or one source file (then its folder is the input root).
        fmt: input format.

    Returns:
        ``(root, relative paths)``: the input root and the sorted sources below it.

    Raises:
        FileNotFoundError: if ``source`` does not exist.
        ValueError: if it holds no source file of that format.
    """
    if not storage.exists(source):
        raise MissingInput(f"input {source!r} does not exist")
    if storage.is_file(source):
        root = source.rstrip("/").rsplit("/", 1)[0] if "/" in source else "."
        files = [storage.relative_path(source, root)]
    else:
        root = source.rstrip("/")
        files = [storage.relative_path(uri, root) for uri in storage.list_files(root)]
    annotation_format = get_format(fmt)
    found = annotation_format.sources(files)
    if not found:
        raise InvalidInput(f"no {fmt} source files ({annotation_format.looks_for}) in {source!r}")
    return root, found


def _fetcher(root: str) -> Fetch:
    def fetch(relative: str) -> bytes:
        try:
            return storage.read_bytes(storage.join(root, relative))
        except (IsADirectoryError, NotADirectoryError):
            raise MissingInput(f"{relative} is not a file") from None

    return fetch


def _lister(root: str) -> Callable[[str], list[str]]:
    def list_files(relative: str) -> list[str]:
        return [
            storage.relative_path(uri, root)
            for uri in storage.list_files(storage.join(root, relative))
        ]

    return list_files


@io_task(name="convert-source")
def convert_source(
    root: str,
    relative: str,
    fmt: Format,
    labels: LabelMap,
    staging: str,
    options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Read one source (a file, or a folder for folder formats) and summarise it (labels
    resolved, masks as RLE).

    Images whose bytes are not a file of the input (embedded ``imageData``, EXIF-rotated
    images) are written to ``staging`` under a content hash, so parallel tasks never write
    the same name with different bytes.

    Args:
        root: input root URI.
        relative: the source below ``root``.
        fmt: input format.
        labels: resolves annotated labels to classes.
        staging: folder URI for images that exist only in memory.
        options: the format's options by name (e.g. VIA's ``attribute``); others default.

    Returns:
        ``canonical.summarize``'s JSON-able summary.
    """
    result = get_format(fmt).read_source(relative, _fetcher(root), _lister(root), options)
    uris = {}
    for record in result.images:
        if record.image_bytes is None:
            uris[record.file_name] = storage.join(root, record.image_path or record.file_name)
        else:
            digest = hashlib.sha1(record.image_bytes).hexdigest()
            suffix = posixpath.splitext(record.file_name)[1]
            uris[record.file_name] = storage.write_bytes(
                storage.join(staging, digest + suffix), record.image_bytes
            )
    return canonical.summarize(relative, result, labels, uris)


@io_task(name="copy-images")
def copy_images(copies: Sequence[tuple[str, str]], destination: str) -> int:
    """Copy images to ``<destination>/images/<file_name>``; returns how many."""
    for uri, file_name in copies:
        storage.copy_file(uri, storage.join(destination, canonical.IMAGES_FOLDER, file_name))
    return len(copies)


@io_task(name="write-annotations")
def write_annotations(dataset: canonical.CanonicalDataset, destination: str) -> dict[str, str]:
    """Write ``annotations/{train,val}.json`` and ``report.json``.

    Returns:
        ``{"train": uri, "val": uri, "report": uri}``.
    """
    written = {}
    for split, document in dataset.documents.items():
        written[split] = storage.write_bytes(
            storage.join(destination, canonical.ANNOTATIONS_FOLDER, f"{split}.json"),
            canonical.dumps(document),
        )
    written["report"] = storage.write_bytes(
        storage.join(destination, canonical.REPORT_NAME), canonical.dumps(dataset.report, indent=2)
    )
    return written


@io_task(name="read-labels")
def read_labels(uri: str) -> list[str]:
    """Class names from a labels file (one per line)."""
    try:
        text = storage.read_bytes(uri).decode("utf-8")
    except FileNotFoundError:
        raise MissingInput(f"labels file {uri!r} not found") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"labels file {uri!r} is not UTF-8 text") from None
    return parse_labels(text)


@io_task(name="remove-staging")
def remove_tree(uri: str) -> None:
    """Delete a folder tree (the staging folder) if present."""
    storage.remove(uri)
