"""Predictions read back from the committed ``area_ratios`` and ``instances`` tables.

An image's prediction is its newest result in the date range: the ``area_ratios`` rows of its
latest ``run_date`` give its size, model and per-class ratios (images without detections
included), the ``instances`` rows of the same day its detections. Masks come from
``instances.mask_rle`` (schema version 2); rows written before it have none, and such an
instance is kept with ``mask_rle = None`` for the caller to report.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from collections.abc import Sequence

import numpy as np

from tasks.annotations.rle import mask_from_string
from tasks.failures import InvalidInput
from tasks.tables.queries import query

_LATEST_SQL = """
WITH ranked AS (
  SELECT *, max(run_date) OVER (PARTITION BY image_uri) AS latest
  FROM read_parquet($files, hive_partitioning = true)
  WHERE ($since IS NULL OR run_date >= CAST($since AS DATE))
    AND ($until IS NULL OR run_date <= CAST($until AS DATE))
)
SELECT image_uri, CAST(run_date AS VARCHAR), image_width, image_height, model_name,
       model_version, class_id, class_name, area_ratio
FROM ranked WHERE run_date = latest ORDER BY image_uri, class_id
"""

_INSTANCES_SQL = """
SELECT image_uri, CAST(run_date AS VARCHAR), class_id, class_name, score, y1, x1, y2, x2,
       mask_rle
FROM read_parquet($files, hive_partitioning = true, union_by_name = true)
WHERE ($since IS NULL OR run_date >= CAST($since AS DATE))
  AND ($until IS NULL OR run_date <= CAST($until AS DATE))
ORDER BY image_uri, run_date, instance_index
"""


@dataclasses.dataclass(frozen=True)
class PredictedInstance:
    """One detection.

    Attributes:
        class_id, class_name: the model's class (ids 1..C).
        score: detection confidence.
        box: ``(y1, x1, y2, x2)`` in pixels, y2/x2 exclusive.
        mask_rle: COCO RLE JSON text at the image size; None for rows of schema version 1.
    """

    class_id: int
    class_name: str
    score: float
    box: tuple[int, int, int, int]
    mask_rle: str | None

    def mask(self) -> np.ndarray:
        """bool ``[H, W]``; a version-1 row without a mask is a ValueError."""
        if self.mask_rle is None:
            raise InvalidInput("this instance was written before masks were stored (schema 1)")
        return mask_from_string(self.mask_rle)


@dataclasses.dataclass(frozen=True)
class ImagePrediction:
    """An image's newest result.

    Attributes:
        image_uri: the image as batch inference read it.
        run_date: ``YYYY-MM-DD`` of that result.
        height, width: the image size (after EXIF orientation), which masks have.
        model_name, model_version: the model that produced it.
        class_names: the model's classes in id order.
        area_ratios: class name -> share of the image its instances cover.
        instances: the detections, in detection order.
    """

    image_uri: str
    run_date: str
    height: int
    width: int
    model_name: str
    model_version: str
    class_names: tuple[str, ...]
    area_ratios: dict[str, float]
    instances: tuple[PredictedInstance, ...] = ()


def read_predictions(
    output_uri: str,
    since: datetime.date | None = None,
    until: datetime.date | None = None,
    images: Sequence[str] | None = None,
) -> list[ImagePrediction]:
    """The newest prediction of every image processed in ``[since, until]``, by image URI.

    Args:
        output_uri: batch inference's output folder (local or s3://).
        since, until: inclusive run_date bounds; None leaves that side open.
        images: only these image URIs (None: all).

    Raises:
        FileNotFoundError: no committed tables under ``output_uri``.
    """
    bounds = {"since": _iso(since), "until": _iso(until)}
    wanted = set(images) if images is not None else None
    rows = query(output_uri, "area_ratios", _LATEST_SQL, bounds)[1]
    found = {
        uri: _image(list(group))
        for uri, group in itertools.groupby(rows, lambda r: r[0])
        if wanted is None or uri in wanted
    }
    detections: dict[str, list[PredictedInstance]] = {}
    for uri, day, class_id, name, score, y1, x1, y2, x2, mask_rle in _instance_rows(
        output_uri, bounds
    ):
        if uri in found and found[uri].run_date == day:
            detections.setdefault(uri, []).append(
                PredictedInstance(class_id, name, float(score), (y1, x1, y2, x2), mask_rle)
            )
    return [
        dataclasses.replace(found[uri], instances=tuple(detections.get(uri, ())))
        for uri in sorted(found)
    ]


def _image(rows: list[tuple]) -> ImagePrediction:
    uri, day, width, height, model, version = rows[0][:6]
    return ImagePrediction(
        uri,
        day,
        height,
        width,
        model,
        version,
        tuple(row[7] for row in rows),
        {row[7]: row[8] for row in rows},
    )


def _instance_rows(output_uri: str, bounds: dict[str, str | None]) -> list[tuple]:
    try:
        return query(output_uri, "instances", _INSTANCES_SQL, bounds)[1]
    except FileNotFoundError:  # every image so far had no detection
        return []


def _iso(day: datetime.date | None) -> str | None:
    return day.isoformat() if day else None
