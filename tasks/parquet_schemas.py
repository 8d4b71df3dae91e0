"""The output tables of batch inference, declared once.

Each table lives at ``<output_uri>/<table>/run_date=YYYY-MM-DD/part-<shard>.parquet`` (hive
partitioning); ``run_date`` is the partition key, present in the path and not in the files.
Readers (DuckDB ``hive_partitioning=true``, ``pyarrow.dataset(..., partitioning="hive")``,
pandas) add it back as a column.

Every file carries the schema version in its Parquet key-value metadata
(``mrcnn_pipeline.schema_version``). Version 2 added ``instances.mask_rle``; files written
before it lack that column, so readers that mix partitions of both versions read by column
name (DuckDB ``union_by_name = true``; pyarrow/pandas with ``schema=INSTANCES``), which gives
NULL for the old rows. Version 3 added the ``images`` table; partitions written before it
have no ``images`` files, so its readers see fewer days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

PARTITION_KEY = "run_date"
SCHEMA_VERSION = 3
VERSION_KEY = "mrcnn_pipeline.schema_version"
TIMESTAMP = pa.timestamp("us", tz="UTC")

AREA_RATIOS = pa.schema([
    pa.field("image_uri", pa.string(), nullable=False),
    pa.field("image_width", pa.int32(), nullable=False),
    pa.field("image_height", pa.int32(), nullable=False),
    pa.field("class_id", pa.int32(), nullable=False),
    pa.field("class_name", pa.string(), nullable=False),
    pa.field("instance_count", pa.int32(), nullable=False),
    pa.field("pixel_count", pa.int64(), nullable=False),
    pa.field("area_ratio", pa.float64(), nullable=False),  # pixel_count / (width * height)
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("inferred_at", TIMESTAMP, nullable=False),
])

INSTANCES = pa.schema([
    pa.field("image_uri", pa.string(), nullable=False),
    pa.field("instance_index", pa.int32(), nullable=False),
    pa.field("class_id", pa.int32(), nullable=False),
    pa.field("class_name", pa.string(), nullable=False),
    pa.field("score", pa.float32(), nullable=False),
    pa.field("y1", pa.int32(), nullable=False),  # pixels; y2/x2 exclusive
    pa.field("x1", pa.int32(), nullable=False),
    pa.field("y2", pa.int32(), nullable=False),
    pa.field("x2", pa.int32(), nullable=False),
    pa.field("pixel_count", pa.int64(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    # COCO compressed RLE at the original image size, as JSON text: {"size": [H, W], "counts"}
    pa.field("mask_rle", pa.string(), nullable=False),
])

ERRORS = pa.schema([
    pa.field("image_uri", pa.string(), nullable=False),
    pa.field("error_type", pa.string(), nullable=False),
    pa.field("message", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("failed_at", TIMESTAMP, nullable=False),
])

# One row per decoded image (processed, or failed in the model): tasks.inference.image_metadata.
IMAGES = pa.schema([
    pa.field("image_uri", pa.string(), nullable=False),
    pa.field("image_width", pa.int32(), nullable=False),  # after EXIF orientation
    pa.field("image_height", pa.int32(), nullable=False),
    pa.field("bytes", pa.int64(), nullable=False),  # the file's size
    pa.field("fingerprint", pa.string(), nullable=False),  # as in the index: ETag or size+mtime
    pa.field("captured_at", TIMESTAMP),  # EXIF DateTimeOriginal; UTC when it has no offset
    pa.field("gps_latitude", pa.float64()),  # decimal degrees, south negative
    pa.field("gps_longitude", pa.float64()),  # decimal degrees, west negative
    # hive key=value folders and path_pattern groups; DuckDB: path_fields['site']
    pa.field("path_fields", pa.map_(pa.string(), pa.string()), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
])

# Written by the nightly report (one file per run_date, replaced whole), not by batch inference.
DRIFT = pa.schema([
    pa.field("class_name", pa.string(), nullable=False),
    pa.field("statistic", pa.string(), nullable=False),  # "psi", "ks"
    pa.field("value", pa.float64(), nullable=False),
    pa.field("threshold", pa.float64(), nullable=False),
    pa.field("drifting", pa.bool_(), nullable=False),
    pa.field("window_days", pa.int32(), nullable=False),
    pa.field("today_images", pa.int64(), nullable=False),
    pa.field("window_images", pa.int64(), nullable=False),
])


# What each table holds, and the meaning of each column: the documentation's schema reference
# is generated from these (and a test requires a meaning for every column).
TABLE_DESCRIPTIONS: dict[str, str] = {
    "area_ratios": "One row per image and class, classes without instances included with 0.",
    "instances": "One row per detection.",
    "errors": "One row per listed image that could not be processed.",
    "images": ("One row per decoded image: processed, or failed in the model. Files that do "
               "not decode are only in `errors`. Since schema version 3."),
    "drift": ("Written by the nightly report, one file per run_date, replaced whole: the drift "
              "statistics of each class, the report day against the window before it."),
}

COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "area_ratios": {
        "image_uri": "the image, as listed below the input URI",
        "image_width": "width in pixels, after EXIF orientation",
        "image_height": "height in pixels, after EXIF orientation",
        "class_id": "the class's id in the model (1..K; 0 is the background)",
        "class_name": "the class's name",
        "instance_count": "detections of the class in the image",
        "pixel_count": "pixels in the union of the class's instance masks",
        "area_ratio": "pixel_count / (image_width × image_height), 0..1",
        "model_name": "the model's name",
        "model_version": "the registry version number (`3`), or `sha256-<16 hex>` of the "
                         "weights of a model from outside the registry",
        "run_id": "the flow run that wrote the row",
        "inferred_at": "when the image was processed",
    },
    "instances": {
        "image_uri": "the image, as in `area_ratios`",
        "instance_index": "the detection's place in the model's output, 0 first",
        "class_id": "the detected class's id",
        "class_name": "the detected class's name",
        "score": "the detection's score, 0..1",
        "y1": "box top, in pixels of the original image",
        "x1": "box left",
        "y2": "box bottom (exclusive)",
        "x2": "box right (exclusive)",
        "pixel_count": "pixels of the instance's mask",
        "model_version": "as in `area_ratios`",
        "run_id": "the flow run that wrote the row",
        "mask_rle": "the mask at the original image size as COCO compressed RLE JSON, "
                    '`{"size": [H, W], "counts": "…"}`; since schema version 2',
    },
    "errors": {
        "image_uri": "the image that failed",
        "error_type": "`empty_file`, `not_an_image`, `truncated`, `corrupt`, `too_large`, "
                      "`unsupported_mode` (skipped until the file changes), `read_error`, "
                      "`inference_error` (retried by the next run)",
        "message": "what went wrong, in one line",
        "run_id": "the flow run that wrote the row",
        "failed_at": "when it failed",
    },
    "images": {
        "image_uri": "the image, as in `area_ratios`",
        "image_width": "width in pixels, after EXIF orientation",
        "image_height": "height in pixels, after EXIF orientation",
        "bytes": "the file's size",
        "fingerprint": "what tells a changed file: ETag and size, or size and mtime",
        "captured_at": "EXIF DateTimeOriginal at its offset; taken as UTC without one",
        "gps_latitude": "EXIF GPS latitude in decimal degrees, south negative",
        "gps_longitude": "EXIF GPS longitude in decimal degrees, west negative",
        "path_fields": "hive-style `key=value` folders of the path and the named groups of "
                       "`path_pattern`; DuckDB: `path_fields['site']`",
        "model_version": "as in `area_ratios`",
        "run_id": "the flow run that wrote the row",
    },
    "drift": {
        "class_name": "the class",
        "statistic": "`psi` (population stability index) or `ks` (Kolmogorov–Smirnov D)",
        "value": "the statistic's value",
        "threshold": "drifting when value ≥ threshold for PSI, > threshold for KS",
        "drifting": "the class's verdict: both statistics drift and both samples are large "
                    "enough",
        "window_days": "days before the report day that form the window",
        "today_images": "images of the report day",
        "window_images": "images of the window",
    },
}


def _versioned(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({VERSION_KEY: str(SCHEMA_VERSION)})


SCHEMAS: dict[str, pa.Schema] = {"area_ratios": _versioned(AREA_RATIOS),
                                 "instances": _versioned(INSTANCES), "errors": _versioned(ERRORS),
                                 "images": _versioned(IMAGES)}


def schema_version(schema: pa.Schema) -> int:
    """The version a file's schema was written with (1: before versions were recorded)."""
    metadata = schema.metadata or {}
    return int(metadata.get(VERSION_KEY.encode(), b"1"))


def to_table(name: str, rows: Sequence[Mapping[str, Any]],
             constants: Mapping[str, Any] | None = None) -> pa.Table:
    """Rows of table ``name`` as a pyarrow Table with exactly that table's schema.

    Args:
        name: ``area_ratios``, ``instances``, ``errors`` or ``images``.
        rows: one dict per row; keys not in the schema are an error.
        constants: values shared by every row (e.g. ``run_id``), added to each.

    Raises:
        KeyError: unknown table name.
        ValueError: a row lacks a column, has one the schema does not know, or holds None
            in a required column.
    """
    if name not in SCHEMAS:
        raise KeyError(f"unknown table {name!r}; expected one of {sorted(SCHEMAS)}")
    schema = SCHEMAS[name]
    constants = dict(constants or {})
    columns: dict[str, list[Any]] = {field.name: [] for field in schema}
    for row in rows:
        full = {**row, **constants}
        if set(full) != set(columns):
            missing, extra = set(columns) - set(full), set(full) - set(columns)
            raise ValueError(f"{name} row does not match the schema: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
        for key, value in full.items():
            columns[key].append(value)
    table = pa.Table.from_pydict(columns, schema=schema)
    # pyarrow does not enforce `nullable=False` itself.
    empty = [f.name for f in schema if not f.nullable and table.column(f.name).null_count]
    if empty:
        raise ValueError(f"{name} rows have missing values in required columns {empty}")
    return table
