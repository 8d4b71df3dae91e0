"""The output schemas, declared once."""

from __future__ import annotations

import datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.annotations.rle import rle_string
from tasks.parquet_schemas import (AREA_RATIOS, ERRORS, IMAGES, INSTANCES, SCHEMA_VERSION,
                                   schema_version, to_table)

NOW = datetime.datetime(2024, 5, 1, 2, 0, 7, tzinfo=datetime.timezone.utc)


def area_row(uri: str, class_id: int = 1, ratio: float = 0.25) -> dict:
    return {"image_uri": uri, "image_width": 4, "image_height": 2, "class_id": class_id,
            "class_name": f"c{class_id}", "instance_count": 1, "pixel_count": int(8 * ratio),
            "area_ratio": ratio, "model_name": "roads", "model_version": "3", "run_id": "r1",
            "inferred_at": NOW}


def instance_row(uri: str) -> dict:
    return {"image_uri": uri, "instance_index": 0, "class_id": 1, "class_name": "c1",
            "score": 0.5, "y1": 0, "x1": 0, "y2": 2, "x2": 2, "pixel_count": 4,
            "model_version": "3", "mask_rle": rle_string(np.ones((2, 2), bool))}


def error_row(uri: str) -> dict:
    return {"image_uri": uri, "error_type": "truncated", "message": "cut", "run_id": "r1",
            "failed_at": NOW}


def test_schemas_are_the_documented_ones():
    assert [(f.name, str(f.type)) for f in AREA_RATIOS] == [
        ("image_uri", "string"), ("image_width", "int32"), ("image_height", "int32"),
        ("class_id", "int32"), ("class_name", "string"), ("instance_count", "int32"),
        ("pixel_count", "int64"), ("area_ratio", "double"), ("model_name", "string"),
        ("model_version", "string"), ("run_id", "string"), ("inferred_at", "timestamp[us, tz=UTC]")]
    assert [(f.name, str(f.type)) for f in INSTANCES] == [
        ("image_uri", "string"), ("instance_index", "int32"), ("class_id", "int32"),
        ("class_name", "string"), ("score", "float"), ("y1", "int32"), ("x1", "int32"),
        ("y2", "int32"), ("x2", "int32"), ("pixel_count", "int64"), ("model_version", "string"),
        ("run_id", "string"), ("mask_rle", "string")]
    assert [(f.name, str(f.type)) for f in ERRORS] == [
        ("image_uri", "string"), ("error_type", "string"), ("message", "string"),
        ("run_id", "string"), ("failed_at", "timestamp[us, tz=UTC]")]
    assert [(f.name, str(f.type), f.nullable) for f in IMAGES] == [
        ("image_uri", "string", False), ("image_width", "int32", False),
        ("image_height", "int32", False), ("bytes", "int64", False),
        ("fingerprint", "string", False), ("captured_at", "timestamp[us, tz=UTC]", True),
        ("gps_latitude", "double", True), ("gps_longitude", "double", True),
        ("path_fields", "map<string, string>", False), ("model_version", "string", False),
        ("run_id", "string", False)]


def test_to_table_adds_constants_and_refuses_rows_off_the_schema():
    rows = [{k: v for k, v in area_row("a.png").items() if k != "run_id"}]
    table = to_table("area_ratios", rows, {"run_id": "r9"})
    assert table.schema.equals(AREA_RATIOS) and table["run_id"].to_pylist() == ["r9"]
    with pytest.raises(ValueError, match=r"missing \['run_id'\]"):
        to_table("area_ratios", rows)
    with pytest.raises(ValueError, match=r"unknown \['extra'\]"):
        to_table("errors", [{**error_row("a.png"), "extra": 1}])
    with pytest.raises(ValueError, match="required columns"):
        to_table("errors", [{**error_row("a.png"), "message": None}])
    with pytest.raises(KeyError, match="unknown table"):
        to_table("area", [])


def version_one_instances() -> pa.Table:
    """An ``instances`` file as written before schema version 2: no ``mask_rle``, no version."""
    old = pa.schema([field for field in INSTANCES if field.name != "mask_rle"])
    row = {**instance_row("old.png"), "run_id": "r0"}
    del row["mask_rle"]
    return pa.Table.from_pylist([row], schema=old)


def test_files_carry_the_schema_version_and_old_partitions_stay_readable(tmp_path):
    table = to_table("instances", [instance_row("new.png")], {"run_id": "r1"})
    assert schema_version(table.schema) == SCHEMA_VERSION == 3
    for day, data in (("2026-01-01", version_one_instances()), ("2026-01-02", table)):
        (tmp_path / "instances" / f"run_date={day}").mkdir(parents=True)
        pq.write_table(data, tmp_path / "instances" / f"run_date={day}" / "part-0.parquet")
    files = sorted((tmp_path / "instances").glob("*/*.parquet"))
    assert [schema_version(pq.read_schema(path)) for path in files] == [1, 3]
    # The documented query for mixed partitions (docs/concepts/tables.md): by name, NULL where the column is missing.
    rows = duckdb.sql(f"SELECT image_uri, mask_rle IS NULL FROM read_parquet("
                      f"'{tmp_path}/instances/*/*.parquet', hive_partitioning = true, "
                      f"union_by_name = true) ORDER BY run_date").fetchall()
    assert rows == [("old.png", True), ("new.png", False)]
    frame = pd.read_parquet(tmp_path / "instances", schema=INSTANCES)
    assert sorted(frame["image_uri"]) == ["new.png", "old.png"]
    assert frame.set_index("image_uri")["mask_rle"].isna().to_dict() == {"new.png": False,
                                                                        "old.png": True}


def test_images_path_fields_read_as_a_map_in_duckdb_and_pandas(tmp_path):
    rows = [{"image_uri": "site=a/x.jpg", "image_width": 4, "image_height": 2, "bytes": 10,
             "fingerprint": "size=10", "captured_at": NOW, "gps_latitude": -33.5,
             "gps_longitude": 151.25, "path_fields": {"site": "a", "camera": "cam01"}},
            {"image_uri": "y.jpg", "image_width": 4, "image_height": 2, "bytes": 11,
             "fingerprint": "size=11", "captured_at": None, "gps_latitude": None,
             "gps_longitude": None, "path_fields": {}}]
    table = to_table("images", rows, {"model_version": "3", "run_id": "r1"})
    (tmp_path / "images" / "run_date=2026-01-03").mkdir(parents=True)
    pq.write_table(table, tmp_path / "images" / "run_date=2026-01-03" / "part-0.parquet")
    # The documented form (docs/concepts/tables.md): MAP(VARCHAR, VARCHAR), so path_fields['site'] is the value or NULL.
    assert duckdb.sql(f"SELECT image_uri, path_fields['site'], captured_at IS NULL FROM "
                      f"read_parquet('{tmp_path}/images/*/*.parquet') ORDER BY 1").fetchall() == [
        ("site=a/x.jpg", "a", False), ("y.jpg", None, True)]
    frame = pd.read_parquet(tmp_path / "images")  # pandas: (key, value) pairs; dict() them
    assert [dict(pairs) for pairs in frame["path_fields"]] == [{"site": "a", "camera": "cam01"},
                                                               {}]
