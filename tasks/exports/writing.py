"""Prefect tasks of an export: read the predictions, copy images, write the documents.

Tasks pass URIs and typed records; a storage hiccup is retried, a missing table is not.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from tasks import storage
from tasks.exports.folder import export_documents, image_place, json_bytes
from tasks.exports.predictions import ImagePrediction, read_predictions
from tasks.io_task import io_task


@io_task(name="read-predictions")
def load_predictions(
    output_uri: str,
    since: datetime.date | None = None,
    until: datetime.date | None = None,
    images: Sequence[str] | None = None,
) -> list[ImagePrediction]:
    """The newest prediction of each image in the date range (see ``read_predictions``)."""
    return read_predictions(output_uri, since, until, images)


@io_task(name="copy-export-images")
def copy_images(fmt: str, names: Mapping[str, str], destination: str) -> int:
    """Copy each image (URI -> relative name) to its place in the export folder."""
    for uri, relative in names.items():
        storage.copy_file(uri, storage.join(destination, image_place(fmt, relative)))
    return len(names)


@io_task(name="write-export-documents")
def write_documents(
    fmt: str, predictions: Sequence[ImagePrediction], names: Mapping[str, str], destination: str
) -> list[str]:
    """Write the format's documents; returns their URIs."""
    return [
        storage.write_bytes(storage.join(destination, path), data)
        for path, data in sorted(export_documents(fmt, predictions, names).items())
    ]


@io_task(name="write-json")
def write_json(uri: str, document: object) -> str:
    """Write one JSON document (indented UTF-8); returns its URI."""
    return storage.write_bytes(uri, json_bytes(document))
