"""Query batch-inference outputs with DuckDB: per-day, per-class summaries and a CSV per run.

Local folders are read directly; ``s3://`` goes through the project's s3fs filesystem
(``con.register_filesystem``, see ``tasks.tables.queries``), so no DuckDB extension has to be
downloaded. The tables and their columns are described in ``tasks.parquet_schemas``.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Sequence
from typing import Any

from tasks.failures import InvalidSetting
from tasks.tables.queries import query

FORMATS = ("table", "csv", "json")

SUMMARY_SQL = """
SELECT run_date, class_name,
       count(DISTINCT image_uri) AS images,
       count(DISTINCT image_uri) FILTER (WHERE instance_count > 0) AS images_with_class,
       sum(instance_count) AS instances,
       avg(area_ratio) AS mean_area_ratio,
       max(area_ratio) AS max_area_ratio
FROM read_parquet($files, hive_partitioning = true)
WHERE ($since IS NULL OR run_date >= CAST($since AS DATE))
  AND ($class IS NULL OR class_name = $class)
GROUP BY run_date, class_name
ORDER BY run_date, class_name
"""


def summarize(
    output_uri: str, since: datetime.date | None = None, class_name: str | None = None
) -> tuple[list[str], list[tuple]]:
    """Per run_date and class: images, images with the class, instances, mean/max area ratio."""
    return query(
        output_uri,
        "area_ratios",
        SUMMARY_SQL,
        {"since": since.isoformat() if since else None, "class": class_name},
    )


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    """Rows as an aligned text table, CSV or a JSON list of objects."""
    if fmt not in FORMATS:
        raise InvalidSetting(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "json":
        return (
            json.dumps([dict(zip(columns, row)) for row in rows], default=_json_value, indent=2)
            + "\n"
        )
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_text(value) for value in row] for row in rows])
        return buffer.getvalue()
    cells = [list(columns)] + [[_text(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def image_csv(output_uri: str, run_date: str) -> str:
    """One line per image of a run_date, as the legacy TF 1.15 repository's ``results.csv``.

    Columns: ``image_uri, image_width, image_height, instance_count``, ``<class>_area_pct``
    per class, and ``error`` (the error type of images that could not be processed).
    """
    columns, rows = query(
        output_uri,
        "area_ratios",
        """
        SELECT image_uri, image_width, image_height, class_name, instance_count, area_ratio
        FROM read_parquet($files, hive_partitioning = true)
        WHERE run_date = CAST($day AS DATE) ORDER BY image_uri, class_id""",
        {"day": run_date},
    )
    images: dict[str, dict[str, Any]] = {}
    classes: list[str] = []
    for uri, width, height, name, count, ratio in rows:
        image = images.setdefault(
            uri,
            {"image_uri": uri, "image_width": width, "image_height": height, "instance_count": 0},
        )
        image["instance_count"] += count
        image[f"{name}_area_pct"] = round(100.0 * ratio, 4)
        if name not in classes:
            classes.append(name)
    for uri, error_type in _errors(output_uri, run_date):
        images.setdefault(uri, {"image_uri": uri})["error"] = error_type
    header = [
        "image_uri",
        "image_width",
        "image_height",
        "instance_count",
        *[f"{name}_area_pct" for name in classes],
        "error",
    ]
    return render(header, [[image.get(col) for col in header] for image in images.values()], "csv")


def _errors(output_uri: str, run_date: str) -> list[tuple]:
    try:
        return query(
            output_uri,
            "errors",
            """
            SELECT image_uri, error_type FROM read_parquet($files, hive_partitioning = true)
            WHERE run_date = CAST($day AS DATE) ORDER BY image_uri""",
            {"day": run_date},
        )[1]
    except FileNotFoundError:
        return []


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
