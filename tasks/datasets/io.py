"""Prefect tasks of ``merge-datasets``: read a dataset, hash its images, write the merge.

Tasks pass URIs, parsed documents and hashes, never image bytes. As in ``tasks.convert``,
only storage I/O is retried, and only for a transient cause (``tasks.failures``): a missing
dataset, a folder that is not a canonical dataset or a missing image fail at once, with one
line naming the user's URI. Images are copied with ``tasks.convert.copy_images``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from tasks import storage
from tasks.annotations.canonical import (
    ANNOTATIONS_FOLDER,
    IMAGES_FOLDER,
    REPORT_NAME,
    SPLITS,
    dumps,
)
from tasks.datasets import lineage
from tasks.datasets.documents import DatasetContent, not_canonical, parse_documents
from tasks.datasets.merge import MergedDataset
from tasks.failures import InvalidSetting, MissingInput
from tasks.io_task import io_task


@dataclasses.dataclass(frozen=True)
class StoredDataset:
    """A canonical dataset as read.

    Attributes:
        content: its parsed documents.
        annotation_bytes: ``"train"``/``"val"`` -> the annotation file's bytes (hashed as read).
        recorded_hash: the content hash its ``dataset.json`` records; None without one.
    """

    content: DatasetContent
    annotation_bytes: dict[str, bytes]
    recorded_hash: str | None


def check_locations(base: str, add: str, output: str) -> None:
    """Refuse an output that would overwrite or be read as an input (no storage access).

    Raises:
        ValueError: ``output`` is ``base`` or ``add``, or lies inside one of them.
    """
    for role, uri in (("base", base), ("add", add)):
        if storage.is_inside(output, uri):
            raise InvalidSetting(
                f"output {output!r} must not be the {role} dataset {uri!r} or "
                "inside it (the merge would overwrite what it reads)"
            )


def annotation_uri(uri: str, split: str) -> str:
    """``<uri>/annotations/<split>.json``."""
    return storage.join(uri, ANNOTATIONS_FOLDER, f"{split}.json")


def locate_dataset(uri: str, role: str) -> None:
    """Check that ``uri`` looks like a canonical dataset (both annotation files exist).

    Raises:
        FileNotFoundError: nothing at ``uri``.
        NotCanonicalError: an annotation file is missing.
    """
    if not storage.exists(uri):
        raise MissingInput(f"{role} dataset {uri!r} does not exist")
    for split in SPLITS:
        if not storage.is_file(annotation_uri(uri, split)):
            raise not_canonical(role, uri, f"{ANNOTATIONS_FOLDER}/{split}.json not found")


@io_task(name="read-dataset")
def read_dataset(uri: str, role: str) -> StoredDataset:
    """Read and check a canonical dataset's annotations and its ``dataset.json``, if any.

    Args:
        uri: the dataset folder.
        role: how errors name it (``"base"``, ``"add"``).

    Raises:
        FileNotFoundError, NotCanonicalError: see ``locate_dataset``; also for invalid JSON,
            documents that do not form a canonical dataset or an invalid ``dataset.json``.
    """
    locate_dataset(uri, role)
    raw = {split: storage.read_bytes(annotation_uri(uri, split)) for split in SPLITS}
    documents = {
        split: _json(role, uri, f"{ANNOTATIONS_FOLDER}/{split}.json", data)
        for split, data in raw.items()
    }
    content = parse_documents(uri, documents, role)
    recorded = None
    description_uri = storage.join(uri, lineage.DATASET_NAME)
    if storage.is_file(description_uri):
        document = _json(role, uri, lineage.DATASET_NAME, storage.read_bytes(description_uri))
        try:
            recorded = lineage.recorded_hash(document)
        except ValueError as error:
            raise not_canonical(role, uri, f"{lineage.DATASET_NAME}: {error}") from None
    return StoredDataset(content, raw, recorded)


def _json(role: str, uri: str, name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise not_canonical(role, uri, f"{name} is not valid JSON: {error}") from None


@io_task(name="hash-images")
def hash_images(uri: str, file_names: Sequence[str]) -> dict[str, str]:
    """SHA-256 hex of ``<uri>/images/<file_name>`` for each name.

    Raises:
        FileNotFoundError: an image listed in the annotations is missing.
    """
    hashes = {}
    for file_name in file_names:
        image_uri = storage.join(uri, IMAGES_FOLDER, file_name)
        try:
            hashes[file_name] = lineage.sha256_hex(storage.read_bytes(image_uri))
        except (FileNotFoundError, IsADirectoryError):
            raise MissingInput(f"image {image_uri!r} of dataset {uri!r} not found") from None
    return hashes


def copy_list(dataset: MergedDataset) -> list[tuple[str, str]]:
    """``(source image URI, output file_name)`` per image, for ``convert.copy_images``."""
    return [
        (storage.join(origin, IMAGES_FOLDER, name), file_name)
        for origin, name, file_name in dataset.copies
    ]


def parent_of(stored: StoredDataset, hashes: dict[str, str]) -> tuple[lineage.Parent, str]:
    """The dataset as a parent, and the content hash its files have now.

    The parent's hash is the one its ``dataset.json`` records, or the computed one when it
    has none; the caller compares the two to warn about a dataset changed after writing.
    """
    content = stored.content
    computed = lineage.content_hash(
        stored.annotation_bytes,
        [(i.file_name, hashes[i.file_name], i.split) for i in content.images],
    )
    return lineage.Parent(content.uri, stored.recorded_hash or computed), computed


@io_task(name="write-merged-dataset")
def write_dataset(dataset: MergedDataset, destination: str) -> dict[str, str]:
    """Write ``annotations/{train,val}.json``, ``report.json`` and, last, ``dataset.json``.

    ``dataset.json`` comes last, after the images (copied before this task runs) and the
    documents it describes.

    Returns:
        ``{"train": uri, "val": uri, "report": uri, "dataset": uri}``.
    """
    written = {
        split: storage.write_bytes(
            annotation_uri(destination, split), dumps(dataset.documents[split])
        )
        for split in SPLITS
    }
    written["report"] = storage.write_bytes(
        storage.join(destination, REPORT_NAME), dumps(dataset.report, indent=2)
    )
    written["dataset"] = write_description.fn(destination, dataset.description)
    return written


@io_task(name="write-dataset-description")
def write_description(destination: str, description: dict[str, Any]) -> str:
    """Write ``<destination>/dataset.json`` (after everything it describes); returns its URI."""
    return storage.write_bytes(
        storage.join(destination, lineage.DATASET_NAME), dumps(description, indent=2)
    )
