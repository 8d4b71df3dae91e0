"""Prefect tasks of the nightly report: read the window and the models' registered metrics,
write the drift table and the page, draw the gallery's thumbnails. Storage hiccups are
retried; a missing table is not."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import pyarrow as pa

from tasks import storage
from tasks.io_task import io_task
from tasks.parquet_io import parquet_bytes
from tasks.parquet_schemas import DRIFT, PARTITION_KEY
from tasks.report import gallery
from tasks.report.accuracy import ModelAccuracy, model_accuracy, registered_metrics_uri, unavailable
from tasks.report.drift import DriftRow
from tasks.report.history import History, read_history
from tasks.review.strategies import Pick

REPORTS_FOLDER = "reports"


def report_uri(output_uri: str, day: str) -> str:
    """``<output>/reports/run_date=<day>/index.html``."""
    return storage.join(output_uri, REPORTS_FOLDER, f"{PARTITION_KEY}={day}", "index.html")


@io_task(name="read-report-history")
def load_history(
    output_uri: str, day: datetime.date, window_days: int, path_field: str | None
) -> History:
    """The report day and its window (see ``tasks.report.history``)."""
    return read_history(output_uri, day, window_days, path_field)


@io_task(name="read-model-accuracy")
def read_model_accuracy(
    registry: str | None, models: Sequence[tuple[str, str]]
) -> list[ModelAccuracy]:
    """Each model version's registered evaluation; a version without one gets the reason."""
    found = []
    for name, version in models:
        identity = f"{name}@{version}"
        uri = registered_metrics_uri(registry, name, version) if registry else None
        if uri is None:
            found.append(
                unavailable(
                    identity,
                    (
                        "no registry given: run the report with the model registry to show its "
                        "evaluation"
                        if registry is None
                        else "not a registry version: no registered evaluation"
                    ),
                )
            )
            continue
        try:
            found.append(model_accuracy(identity, storage.read_json(uri, "metrics")))
        except (FileNotFoundError, ValueError) as error:  # no file, or not JSON: named
            found.append(unavailable(identity, str(error)))
    return found


@io_task(name="write-drift")
def write_drift(output_uri: str, day: str, rows: Sequence[DriftRow]) -> str:
    """``<output>/drift/run_date=<day>/part-0.parquet``, replaced whole (one atomic write):
    a reader sees the day's previous rows or the new ones, never both."""
    table = pa.Table.from_pylist([vars(row) for row in rows], schema=DRIFT)
    return storage.write_bytes(
        storage.join(output_uri, "drift", f"{PARTITION_KEY}={day}", "part-0.parquet"),
        parquet_bytes(table),
    )


@io_task(name="draw-gallery")
def draw_gallery(output_uri: str, day: str, picks: Sequence[Pick]) -> list[gallery.GalleryItem]:
    """Thumbnails of the chosen images: their overlays when batch inference drew them."""
    folder = storage.join(output_uri, "overlays", f"{PARTITION_KEY}={day}")
    overlays = (
        [storage.relative_path(uri, folder) for uri in storage.list_files(folder)]
        if storage.exists(folder)
        else []
    )
    items = []
    for pick in picks:
        name = gallery.overlay_name(pick.image_uri, overlays)
        source = storage.join(folder, name) if name else pick.image_uri
        link = f"../../overlays/{PARTITION_KEY}={day}/{name}" if name else None
        try:
            picture = gallery.thumbnail(storage.read_bytes(source))
        except (OSError, ValueError):  # the image moved since: show the reason, not a failure
            continue
        items.append(gallery.GalleryItem(pick.image_uri, pick.detail, picture, link))
    return items


@io_task(name="write-report")
def write_page(output_uri: str, day: str, html: str) -> str:
    """Write the page; returns its URI."""
    return storage.write_bytes(report_uri(output_uri, day), html.encode("utf-8"))
