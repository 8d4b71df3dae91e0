"""Flow ``export-predictions``: batch-inference results -> labelme, COCO results or YOLO-seg.

read the newest prediction of each image in a date range -> copy the images (in parallel
batches) -> write the format's documents. See ``tasks.exports.folder`` for each layout.
"""

from __future__ import annotations

import datetime
from typing import Any

from prefect import flow, get_run_logger, unmapped

from tasks import storage
from tasks.exports.folder import check_format, relative_names
from tasks.exports.writing import copy_images, load_predictions, write_documents
from tasks.failures import InvalidSetting

COPY_BATCH = 64  # images per copy task


@flow(name="export-predictions", flow_run_name="export-predictions-{format}")
def export_predictions(
    output: str,
    destination: str,
    format: str = "labelme",
    since: datetime.date | None = None,
    until: datetime.date | None = None,
) -> dict[str, Any]:
    """Export predictions from batch inference's tables for other tools.

    Args:
        output: batch inference's output folder (local or s3://).
        destination: the export folder; must not lie inside ``output``.
        format: ``labelme``, ``coco-results`` or ``yolo``.
        since, until: inclusive run_date range (None: open).

    Returns:
        ``{destination, format, images, instances, documents}``.
    """
    check_format(format)
    if storage.is_inside(destination, output):
        raise InvalidSetting(
            f"destination {destination!r} must not be inside the results folder {output!r}"
        )
    predictions = load_predictions(output, since, until)
    if not predictions:
        raise InvalidSetting(
            f"no predictions in {output!r} between {since or 'the start'} and {until or 'today'}"
        )
    names = relative_names([p.image_uri for p in predictions])
    items = sorted(names.items())
    batches = [dict(items[i : i + COPY_BATCH]) for i in range(0, len(items), COPY_BATCH)]
    copy_images.map(unmapped(format), batches, unmapped(destination)).result()
    documents = write_documents(format, predictions, names, destination)
    instances = sum(len(p.instances) for p in predictions)
    get_run_logger().info(
        "exported %d images and %d instances as %s to %s",
        len(predictions),
        instances,
        format,
        destination,
    )
    return {
        "destination": destination,
        "format": format,
        "images": len(predictions),
        "instances": instances,
        "documents": len(documents),
    }
