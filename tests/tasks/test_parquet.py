"""The three output schemas, declared once."""

from __future__ import annotations

import datetime

import pytest

from tasks.parquet_schemas import AREA_RATIOS, ERRORS, INSTANCES, to_table

NOW = datetime.datetime(2024, 5, 1, 2, 0, 7, tzinfo=datetime.timezone.utc)


def area_row(uri: str, class_id: int = 1, ratio: float = 0.25) -> dict:
    return {"image_uri": uri, "image_width": 4, "image_height": 2, "class_id": class_id,
            "class_name": f"c{class_id}", "instance_count": 1, "pixel_count": int(8 * ratio),
            "area_ratio": ratio, "model_name": "roads", "model_version": "3", "run_id": "r1",
            "inferred_at": NOW}


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
        ("run_id", "string")]
    assert [(f.name, str(f.type)) for f in ERRORS] == [
        ("image_uri", "string"), ("error_type", "string"), ("message", "string"),
        ("run_id", "string"), ("failed_at", "timestamp[us, tz=UTC]")]


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
