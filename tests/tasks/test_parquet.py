"""The output tables, declared once as row types: their schemas, rows into tables, the
schema version, and files of older versions upcast into the current one."""

from __future__ import annotations

import dataclasses
import datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.annotations.rle import rle_string
from tasks.parquet_schemas import (
    INSTANCES,
    ROW_TYPES,
    SCHEMA_VERSION,
    SCHEMAS,
    VERSION_KEY,
    AreaRatioRow,
    ErrorRow,
    ImageRow,
    InstanceRow,
    columns,
    rows_to_table,
    schema_version,
    upcast,
)

NOW = datetime.datetime(2024, 5, 1, 2, 0, 7, tzinfo=datetime.timezone.utc)


def area_row(uri: str, class_id: int = 1, ratio: float = 0.25) -> AreaRatioRow:
    return AreaRatioRow(
        image_uri=uri,
        image_width=4,
        image_height=2,
        class_id=class_id,
        class_name=f"c{class_id}",
        instance_count=1,
        pixel_count=int(8 * ratio),
        area_ratio=ratio,
        model_name="roads",
        model_version="3",
        run_id="r1",
        inferred_at=NOW,
    )


def instance_row(uri: str, run_id: str = "r1") -> InstanceRow:
    return InstanceRow(
        image_uri=uri,
        instance_index=0,
        class_id=1,
        class_name="c1",
        score=0.5,
        y1=0,
        x1=0,
        y2=2,
        x2=2,
        pixel_count=4,
        model_version="3",
        run_id=run_id,
        mask_rle=rle_string(np.ones((2, 2), bool)),
    )


def error_row(uri: str) -> ErrorRow:
    return ErrorRow(
        image_uri=uri, error_type="truncated", message="cut", run_id="r1", failed_at=NOW
    )


def test_the_schemas_are_derived_from_the_row_types():
    assert list(ROW_TYPES) == list(SCHEMAS) == ["area_ratios", "instances", "errors", "images"]
    for table, row_type in ROW_TYPES.items():
        schema = SCHEMAS[table]
        assert schema.names == [field.name for field in dataclasses.fields(row_type)]
        assert schema.metadata == {VERSION_KEY.encode(): str(SCHEMA_VERSION).encode()}
    assert SCHEMAS["images"].field("captured_at").nullable  # EXIF may not say
    assert not SCHEMAS["images"].field("path_fields").nullable
    # Added after its table (version 2) with no default: null in older rows, so storable.
    assert columns(InstanceRow)["mask_rle"].added == 2
    assert SCHEMAS["instances"].field("mask_rle").nullable


def test_rows_become_a_table_of_their_schema_and_bad_rows_are_refused():
    table = rows_to_table(AreaRatioRow, [area_row("a.png"), area_row("a.png", 2)])
    assert table.schema.equals(SCHEMAS["area_ratios"], check_metadata=True)
    assert table["class_id"].to_pylist() == [1, 2]
    assert rows_to_table(ErrorRow, []).schema.equals(SCHEMAS["errors"])
    with pytest.raises(TypeError, match="run_id"):
        ErrorRow(image_uri="a.png", error_type="truncated", message="cut", failed_at=NOW)
    with pytest.raises(TypeError, match="extra"):
        ErrorRow(image_uri="a.png", error_type="t", message="m", run_id="r", failed_at=NOW, extra=1)
    with pytest.raises(ValueError, match=r"required columns \['message'\]"):
        rows_to_table(ErrorRow, [dataclasses.replace(error_row("a.png"), message=None)])
    with pytest.raises(TypeError, match="ErrorRow rows expected"):
        rows_to_table(ErrorRow, [area_row("a.png")])
    # A row built without a column added later holds its default, as older files' rows do.
    old_style = dataclasses.replace(instance_row("a.png"), mask_rle=None)
    assert rows_to_table(InstanceRow, [old_style])["mask_rle"].to_pylist() == [None]


def version_one_instances() -> pa.Table:
    """An ``instances`` file as written before schema version 2: no ``mask_rle``, no version."""
    old = pa.schema([field for field in INSTANCES if field.name != "mask_rle"])
    row = dataclasses.asdict(instance_row("old.png", run_id="r0"))
    del row["mask_rle"]
    return pa.Table.from_pylist([row], schema=old)


def test_files_carry_the_schema_version_and_old_partitions_stay_readable(tmp_path):
    table = rows_to_table(InstanceRow, [instance_row("new.png")])
    assert schema_version(table.schema) == SCHEMA_VERSION
    for day, data in (("2026-01-01", version_one_instances()), ("2026-01-02", table)):
        (tmp_path / "instances" / f"run_date={day}").mkdir(parents=True)
        pq.write_table(data, tmp_path / "instances" / f"run_date={day}" / "part-0.parquet")
    files = sorted((tmp_path / "instances").glob("*/*.parquet"))
    assert [schema_version(pq.read_schema(path)) for path in files] == [1, SCHEMA_VERSION]
    # The documented query for mixed partitions (docs/concepts/tables.md): by name, NULL where
    # the column is missing.
    rows = duckdb.sql(
        f"SELECT image_uri, mask_rle IS NULL FROM read_parquet("
        f"'{tmp_path}/instances/*/*.parquet', hive_partitioning = true, "
        f"union_by_name = true) ORDER BY run_date"
    ).fetchall()
    assert rows == [("old.png", True), ("new.png", False)]
    frame = pd.read_parquet(tmp_path / "instances", schema=INSTANCES)
    assert sorted(frame["image_uri"]) == ["new.png", "old.png"]
    assert frame.set_index("image_uri")["mask_rle"].isna().to_dict() == {
        "new.png": False,
        "old.png": True,
    }


def test_images_path_fields_read_as_a_map_in_duckdb_and_pandas(tmp_path):
    rows = [
        ImageRow(
            image_uri="site=a/x.jpg",
            image_width=4,
            image_height=2,
            bytes=10,
            fingerprint="size=10",
            captured_at=NOW,
            gps_latitude=-33.5,
            gps_longitude=151.25,
            path_fields={"site": "a", "camera": "cam01"},
            model_version="3",
            run_id="r1",
        ),
        ImageRow(
            image_uri="y.jpg",
            image_width=4,
            image_height=2,
            bytes=11,
            fingerprint="size=11",
            path_fields={},
            model_version="3",
            run_id="r1",
        ),
    ]
    table = rows_to_table(ImageRow, rows)
    (tmp_path / "images" / "run_date=2026-01-03").mkdir(parents=True)
    pq.write_table(table, tmp_path / "images" / "run_date=2026-01-03" / "part-0.parquet")
    # The documented form (docs/concepts/tables.md): MAP(VARCHAR, VARCHAR), so
    # path_fields['site'] is the value or NULL.
    assert duckdb.sql(
        f"SELECT image_uri, path_fields['site'], captured_at IS NULL FROM "
        f"read_parquet('{tmp_path}/images/*/*.parquet') ORDER BY 1"
    ).fetchall() == [("site=a/x.jpg", "a", False), ("y.jpg", None, True)]
    frame = pd.read_parquet(tmp_path / "images")  # pandas: (key, value) pairs; dict() them
    assert [dict(pairs) for pairs in frame["path_fields"]] == [{"site": "a", "camera": "cam01"}, {}]


def test_an_older_file_is_upcast_to_the_current_version_and_a_bad_one_refused():
    old = version_one_instances()
    assert schema_version(old.schema) == 1
    current = upcast("instances", old)
    assert current.schema.equals(SCHEMAS["instances"], check_metadata=True)
    assert current["mask_rle"].to_pylist() == [None]  # its declared default
    assert current.drop_columns(["mask_rle"]).to_pylist() == old.to_pylist()
    assert upcast("instances", current).equals(current)  # the current version: as it is
    newer = current.replace_schema_metadata({VERSION_KEY: str(SCHEMA_VERSION + 1)})
    with pytest.raises(ValueError, match="newer than this software"):
        upcast("instances", newer)
    with pytest.raises(ValueError, match=r"lacking \['score'\]"):
        upcast("instances", old.drop_columns(["score"]))
    with pytest.raises(ValueError, match=r"unknown \['colour'\]"):
        upcast("instances", old.append_column("colour", pa.array(["red"])))
