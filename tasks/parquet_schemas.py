"""The output tables of batch inference, declared once, as row types.

A table is a frozen dataclass whose fields are its columns: :func:`column` gives each its Arrow
type and its meaning, the class docstring says what a row is. The Arrow schemas (``SCHEMAS``)
and the descriptions the documentation's schema reference is generated from
(``TABLE_DESCRIPTIONS``, ``COLUMN_DESCRIPTIONS``) are derived from them, and
:func:`rows_to_table` turns rows into a table of exactly its schema. The producers build these
rows (``tasks.inference``), and so do the tests and benchmarks, so a new column is declared
here, set by its producer and checked by its test.

Each table lives at ``<output_uri>/<table>/run_date=YYYY-MM-DD/part-<stem>.parquet`` (hive
partitioning); ``run_date`` is the partition key, present in the path and not in the files.
Readers (DuckDB ``hive_partitioning=true``, ``pyarrow.dataset(..., partitioning="hive")``,
pandas) add it back as a column.

Every file carries the schema version in its Parquet key-value metadata
(``mrcnn_pipeline.schema_version``). Version 2 added ``instances.mask_rle``; version 3 added
the ``images`` table. A column added to an existing table says in which version (``added``)
and what older rows hold (``default``: null unless another value is right for them). Rows
built without it get that default, so code written before it keeps building valid rows;
compaction rewrites older files in the current version with :func:`upcast`, which fills it in
the same way. Readers that mix partitions of several versions read by column name (DuckDB
``union_by_name = true``; pyarrow/pandas with ``schema=INSTANCES``), which gives null for the
old rows. Partitions written before version 3 have no ``images`` files, so its readers see
fewer days.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

PARTITION_KEY = "run_date"
SCHEMA_VERSION = 3
VERSION_KEY = "mrcnn_pipeline.schema_version"
TIMESTAMP = pa.timestamp("us", tz="UTC")
_COLUMN = "column"


@dataclasses.dataclass(frozen=True)
class Column:
    """How a row field is stored, and what it means."""

    type: pa.DataType
    meaning: str  # one line for the schema reference
    nullable: bool = False  # new rows may hold None
    added: int | None = None  # the schema version that added it to its table
    default: Any = None  # what rows written before ``added`` hold; None: null

    @property
    def stored_nullable(self) -> bool:
        """Whether the file's column allows nulls: new rows may hold them, or older ones do."""
        return self.nullable or (self.added is not None and self.default is None)


def column(
    type_: pa.DataType,
    meaning: str,
    *,
    nullable: bool = False,
    added: int | None = None,
    default: Any = None,
) -> Any:
    """A row field stored as a column of Arrow type ``type_``.

    Args:
        type_: the Arrow type.
        meaning: what the column holds, one line (the schema reference shows it).
        nullable: None is a valid value (and the field's default).
        added: the schema version that added the column to an existing table; the field then
            defaults to ``default``.
        default: the value of rows written before ``added`` (None: null).
    """
    spec = Column(type_, meaning, nullable, added, default)
    if nullable or added is not None:
        return dataclasses.field(default=default, metadata={_COLUMN: spec})
    return dataclasses.field(metadata={_COLUMN: spec})


@dataclasses.dataclass(frozen=True, kw_only=True)
class AreaRatioRow:
    """One row per image and class, classes without instances included with 0."""

    TABLE: ClassVar[str] = "area_ratios"
    image_uri: str = column(pa.string(), "the image, as listed below the input URI")
    image_width: int = column(pa.int32(), "width in pixels, after EXIF orientation")
    image_height: int = column(pa.int32(), "height in pixels, after EXIF orientation")
    class_id: int = column(pa.int32(), "the class's id in the model (1..K; 0 is the background)")
    class_name: str = column(pa.string(), "the class's name")
    instance_count: int = column(pa.int32(), "detections of the class in the image")
    pixel_count: int = column(pa.int64(), "pixels in the union of the class's instance masks")
    area_ratio: float = column(pa.float64(), "pixel_count / (image_width × image_height), 0..1")
    model_name: str = column(pa.string(), "the model's name")
    model_version: str = column(
        pa.string(),
        "the registry version number (`3`), or "
        "`sha256-<16 hex>` of the weights of a model from outside the "
        "registry",
    )
    run_id: str = column(pa.string(), "the flow run that wrote the row")
    inferred_at: datetime.datetime = column(TIMESTAMP, "when the image was processed")


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstanceRow:
    """One row per detection."""

    TABLE: ClassVar[str] = "instances"
    image_uri: str = column(pa.string(), "the image, as in `area_ratios`")
    instance_index: int = column(pa.int32(), "the detection's place in the model's output, 0 first")
    class_id: int = column(pa.int32(), "the detected class's id")
    class_name: str = column(pa.string(), "the detected class's name")
    score: float = column(pa.float32(), "the detection's score, 0..1")
    y1: int = column(pa.int32(), "box top, in pixels of the original image")
    x1: int = column(pa.int32(), "box left")
    y2: int = column(pa.int32(), "box bottom (exclusive)")
    x2: int = column(pa.int32(), "box right (exclusive)")
    pixel_count: int = column(pa.int64(), "pixels of the instance's mask")
    model_version: str = column(pa.string(), "as in `area_ratios`")
    run_id: str = column(pa.string(), "the flow run that wrote the row")
    mask_rle: str | None = column(
        pa.string(),
        "the mask at the original image size as COCO compressed RLE JSON, "
        '`{"size": [H, W], "counts": "…"}`; since schema version 2, null in rows written '
        "before it",
        added=2,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ErrorRow:
    """One row per listed image that could not be processed."""

    TABLE: ClassVar[str] = "errors"
    image_uri: str = column(pa.string(), "the image that failed")
    error_type: str = column(
        pa.string(),
        "`empty_file`, `not_an_image`, `truncated`, "
        "`corrupt`, `too_large`, `unsupported_mode` (skipped until the "
        "file changes), `read_error`, `inference_error` (retried by the "
        "next run)",
    )
    message: str = column(pa.string(), "what went wrong, in one line")
    run_id: str = column(pa.string(), "the flow run that wrote the row")
    failed_at: datetime.datetime = column(TIMESTAMP, "when it failed")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageRow:
    """One row per decoded image: processed, or failed in the model. Files that do not decode
    are only in `errors`. Since schema version 3."""

    TABLE: ClassVar[str] = "images"
    image_uri: str = column(pa.string(), "the image, as in `area_ratios`")
    image_width: int = column(pa.int32(), "width in pixels, after EXIF orientation")
    image_height: int = column(pa.int32(), "height in pixels, after EXIF orientation")
    bytes: int = column(pa.int64(), "the file's size")
    fingerprint: str = column(
        pa.string(), "what tells a changed file: ETag and size, or size and mtime"
    )
    captured_at: datetime.datetime | None = column(
        TIMESTAMP, "EXIF DateTimeOriginal at its offset; taken as UTC without one", nullable=True
    )
    gps_latitude: float | None = column(
        pa.float64(), "EXIF GPS latitude in decimal degrees, south negative", nullable=True
    )
    gps_longitude: float | None = column(
        pa.float64(), "EXIF GPS longitude in decimal degrees, west negative", nullable=True
    )
    path_fields: Mapping[str, str] = column(
        pa.map_(pa.string(), pa.string()),
        "hive-style `key=value` folders of the path and the "
        "named groups of `path_pattern`; DuckDB: `path_fields['site']`",
    )
    model_version: str = column(pa.string(), "as in `area_ratios`")
    run_id: str = column(pa.string(), "the flow run that wrote the row")


@dataclasses.dataclass(frozen=True)
class RunStamp:
    """What every row of one run repeats: the model that wrote it and the run."""

    model_name: str
    model_version: str
    run_id: str


RowT = TypeVar("RowT", AreaRatioRow, InstanceRow, ErrorRow, ImageRow)
ROW_TYPES: dict[str, type] = {
    row.TABLE: row for row in (AreaRatioRow, InstanceRow, ErrorRow, ImageRow)
}


def columns(row_type: type) -> dict[str, Column]:
    """A row type's columns by name, in order."""
    return {field.name: field.metadata[_COLUMN] for field in dataclasses.fields(row_type)}


def schema_of(row_type: type) -> pa.Schema:
    """The Arrow schema of a row type, without the version."""
    return pa.schema(
        [
            pa.field(name, spec.type, nullable=spec.stored_nullable)
            for name, spec in columns(row_type).items()
        ]
    )


def _versioned(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({VERSION_KEY: str(SCHEMA_VERSION)})


AREA_RATIOS = schema_of(AreaRatioRow)
INSTANCES = schema_of(InstanceRow)
ERRORS = schema_of(ErrorRow)
IMAGES = schema_of(ImageRow)
SCHEMAS: dict[str, pa.Schema] = {
    name: _versioned(schema_of(row)) for name, row in ROW_TYPES.items()
}

# Written by the nightly report (one file per run_date, replaced whole), not by batch inference.
DRIFT = pa.schema(
    [
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("statistic", pa.string(), nullable=False),  # "psi", "ks"
        pa.field("value", pa.float64(), nullable=False),
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("drifting", pa.bool_(), nullable=False),
        pa.field("window_days", pa.int32(), nullable=False),
        pa.field("today_images", pa.int64(), nullable=False),
        pa.field("window_images", pa.int64(), nullable=False),
    ]
)
_DRIFT_DESCRIPTION = (
    "Written by the nightly report, one file per run_date, replaced whole: "
    "the drift statistics of each class, the report day against the window "
    "before it."
)
_DRIFT_COLUMNS = {
    "class_name": "the class",
    "statistic": "`psi` (population stability index) or `ks` (Kolmogorov–Smirnov D)",
    "value": "the statistic's value",
    "threshold": "drifting when value ≥ threshold for PSI, > threshold for KS",
    "drifting": "the class's verdict: both statistics drift and both samples are large enough",
    "window_days": "days before the report day that form the window",
    "today_images": "images of the report day",
    "window_images": "images of the window",
}

# What each table holds, and the meaning of each column: the documentation's schema reference
# is generated from these (and a test requires a meaning for every column).
TABLE_DESCRIPTIONS: dict[str, str] = {
    **{name: " ".join((row.__doc__ or "").split()) for name, row in ROW_TYPES.items()},
    "drift": _DRIFT_DESCRIPTION,
}
COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    **{
        name: {column_name: spec.meaning for column_name, spec in columns(row).items()}
        for name, row in ROW_TYPES.items()
    },
    "drift": _DRIFT_COLUMNS,
}


def schema_version(schema: pa.Schema) -> int:
    """The version a file's schema was written with (1: before versions were recorded)."""
    metadata = schema.metadata or {}
    return int(metadata.get(VERSION_KEY.encode(), b"1"))


def rows_to_table(row_type: type[RowT], rows: Sequence[RowT]) -> pa.Table:
    """Rows as a pyarrow Table with exactly their table's schema (``SCHEMAS``).

    Raises:
        TypeError: a row of another type.
        ValueError: None in a column that new rows must fill.
    """
    stray = {type(row).__name__ for row in rows if type(row) is not row_type}
    if stray:
        raise TypeError(f"{row_type.__name__} rows expected, got {sorted(stray)}")
    specs = columns(row_type)
    table = pa.Table.from_pydict(
        {name: [getattr(row, name) for row in rows] for name in specs},
        schema=SCHEMAS[row_type.TABLE],
    )
    empty = [
        name
        for name, spec in specs.items()
        if not spec.nullable and spec.added is None and table.column(name).null_count
    ]
    if empty:
        raise ValueError(f"{row_type.TABLE} rows have missing values in required columns {empty}")
    return table


def upcast(name: str, table: pa.Table) -> pa.Table:
    """A table read from a file of table ``name``, in the current schema and version.

    A column added since the file was written gets its default (null unless declared); the
    others are cast to the current type and nullability.

    Raises:
        ValueError: the file is of a newer version, or lacks a column its version had, or has
            one the schema does not know.
    """
    version = schema_version(table.schema)
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"a {name} file of schema version {version} is newer than this "
            f"software's ({SCHEMA_VERSION})"
        )
    specs = columns(ROW_TYPES[name])
    unknown = sorted(set(table.column_names) - set(specs))
    lacking = [
        column_name
        for column_name, spec in specs.items()
        if column_name not in table.column_names and (spec.added is None or spec.added <= version)
    ]
    if unknown or lacking:
        raise ValueError(
            f"a {name} file of schema version {version} has columns "
            f"{table.column_names}: unknown {unknown}, lacking {lacking}"
        )
    schema = SCHEMAS[name]
    arrays = [
        table[field.name].cast(field.type)
        if field.name in table.column_names
        else pa.array([specs[field.name].default] * table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
