"""Prefect tasks of mask conversion: list sources, convert one source, copy images, write.

Tasks pass URIs and small JSON-able summaries, never arrays. Only storage I/O is retried:
a transient ``OSError`` (connection reset, timeout) is worth another try, a missing file,
refused access or invalid annotation is not.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
from collections.abc import Callable, Sequence
from typing import Any, Literal

from tasks import review, storage
from tasks.annotations import canonical
from tasks.annotations.coco import read_coco
from tasks.annotations.cvat import read_cvat
from tasks.annotations.label_studio import read_label_studio
from tasks.annotations.labelme import read_labelme
from tasks.annotations.labels import LabelMap, parse_labels
from tasks.annotations.legacy import MASK_FOLDER, read_legacy
from tasks.annotations.records import Fetch, ReadResult
from tasks.annotations.via import read_via
from tasks.annotations.yolo import read_yolo
from tasks.io_task import io_task

# tasks.annotations.FORMATS
Format = Literal["labelme", "legacy", "via", "coco", "cvat", "label-studio", "yolo"]
STAGING_FOLDER = ".convert-staging"
# What ``list_sources`` says it looked for, per format (JSON otherwise).
SOURCE_PATTERNS = {"legacy": f"{MASK_FOLDER}/*.png", "cvat": "*.xml", "yolo": "labels/**/*.txt"}


def is_source(fmt: str, relative: str) -> bool:
    """Whether a file (path relative to the input root) is a source of format ``fmt``.

    legacy: ``cv2_mask/*.png``; CVAT: ``*.xml``; YOLO: ``*.txt`` below a ``labels`` folder
    (not ``classes.txt`` or other text beside the dataset); the others: ``*.json``, except a
    review folder's top-level ``review.json`` for labelme.
    """
    lower = relative.lower()
    if fmt == "legacy":
        return lower.endswith(".png") and posixpath.basename(posixpath.dirname(relative)) == MASK_FOLDER
    if fmt == "cvat":
        return lower.endswith(".xml")
    if fmt == "yolo":
        return lower.endswith(".txt") and "labels" in relative.split("/")[:-1]
    if fmt == "labelme" and relative == review.MANIFEST_NAME:
        return False
    return lower.endswith(".json")


@io_task(name="list-sources")
def list_sources(source: str, fmt: Format) -> tuple[str, list[str]]:
    """Find the source files.

    Args:
        source: input folder URI, or one source file (then its folder is the input root).
        fmt: input format.

    Returns:
        ``(root, relative paths)``: the input root and the sorted source files below it.

    Raises:
        FileNotFoundError: if ``source`` does not exist.
        ValueError: if it holds no source file of that format.
    """
    if not storage.exists(source):
        raise FileNotFoundError(f"input {source!r} does not exist")
    if storage.is_file(source):
        root = source.rstrip("/").rsplit("/", 1)[0] if "/" in source else "."
        files = [storage.relative_path(source, root)]
    else:
        root = source.rstrip("/")
        files = [storage.relative_path(uri, root) for uri in storage.list_files(root)]
    found = [path for path in files if is_source(fmt, path)]
    if not found:
        wanted = SOURCE_PATTERNS.get(fmt, "*.json")
        raise ValueError(f"no {fmt} source files ({wanted}) in {source!r}")
    return root, found


def _reader(fmt: str, via_attribute: str, default_label: str | None
            ) -> Callable[[str, bytes, Fetch], ReadResult]:
    if fmt == "via":
        return functools.partial(read_via, attribute=via_attribute, default_label=default_label)
    return {"labelme": read_labelme, "legacy": read_legacy, "coco": read_coco, "cvat": read_cvat,
            "label-studio": read_label_studio, "yolo": read_yolo}[fmt]


def _fetcher(root: str) -> Fetch:
    def fetch(relative: str) -> bytes:
        try:
            return storage.read_bytes(storage.join(root, relative))
        except (IsADirectoryError, NotADirectoryError):
            raise FileNotFoundError(f"{relative} is not a file") from None
    return fetch


@io_task(name="convert-source")
def convert_source(root: str, relative: str, fmt: Format, labels: LabelMap, staging: str,
                   via_attribute: str = "label", default_label: str | None = None
                   ) -> dict[str, Any]:
    """Read one source file and summarise it (labels resolved, masks as RLE).

    Images whose bytes are not a file of the input (embedded ``imageData``, EXIF-rotated
    images) are written to ``staging`` under a content hash, so parallel tasks never write
    the same name with different bytes.

    Args:
        root: input root URI.
        relative: the source file below ``root``.
        fmt: input format.
        labels: resolves annotated labels to classes.
        staging: folder URI for images that exist only in memory.
        via_attribute, default_label: VIA's class attribute and fallback class.

    Returns:
        ``canonical.summarize``'s JSON-able summary.
    """
    fetch = _fetcher(root)
    result = _reader(fmt, via_attribute, default_label)(relative, fetch(relative), fetch)
    uris = {}
    for record in result.images:
        if record.image_bytes is None:
            uris[record.file_name] = storage.join(root, record.image_path or record.file_name)
        else:
            digest = hashlib.sha1(record.image_bytes).hexdigest()
            suffix = posixpath.splitext(record.file_name)[1]
            uris[record.file_name] = storage.write_bytes(
                storage.join(staging, digest + suffix), record.image_bytes)
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
            canonical.dumps(document))
    written["report"] = storage.write_bytes(storage.join(destination, canonical.REPORT_NAME),
                                            canonical.dumps(dataset.report, indent=2))
    return written


@io_task(name="read-labels")
def read_labels(uri: str) -> list[str]:
    """Class names from a labels file (one per line)."""
    try:
        text = storage.read_bytes(uri).decode("utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"labels file {uri!r} not found") from None
    except UnicodeDecodeError:
        raise ValueError(f"labels file {uri!r} is not UTF-8 text") from None
    return parse_labels(text)


@io_task(name="remove-staging")
def remove_tree(uri: str) -> None:
    """Delete a folder tree (the staging folder) if present."""
    storage.remove(uri)
