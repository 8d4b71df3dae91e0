"""The three output schemas, shard files (deterministic, atomic, replaceable) and the manifest
that keeps each run_date partition at one result per image."""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from tasks import processed_manifest as manifest
from tasks.parquet_io import drop_images, table_file, write_shard
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


def image_uris(out: str) -> list[str]:
    query = f"SELECT image_uri FROM '{out}/area_ratios/*/*.parquet' ORDER BY 1"
    return [uri for (uri,) in duckdb.sql(query).fetchall()]


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


def test_shard_files_are_hive_partitioned_and_readable_by_pyarrow_and_duckdb(tmp_path: Path):
    out = str(tmp_path / "out")
    files = write_shard(out, "2024-05-01", "k1", {
        "area_ratios": to_table("area_ratios", [area_row("a.png", 1), area_row("a.png", 2, 0.5)]),
        "errors": to_table("errors", [error_row("b.png")])})
    assert files == {"area_ratios": f"{out}/area_ratios/run_date=2024-05-01/part-k1.parquet",
                     "errors": f"{out}/errors/run_date=2024-05-01/part-k1.parquet"}
    dataset = ds.dataset(f"{out}/area_ratios", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 2 and "run_date" in table.column_names
    got = duckdb.sql(f"SELECT run_date, sum(area_ratio) FROM read_parquet('{out}/area_ratios/*/*"
                     ".parquet', hive_partitioning=true) GROUP BY run_date").fetchall()
    assert got == [(datetime.date(2024, 5, 1), 0.75)]
    assert not list(Path(out).rglob("*.tmp")) and not (Path(out) / "instances").exists()


def test_rewriting_a_shard_replaces_its_files_and_drops_a_stale_table(tmp_path: Path):
    out = str(tmp_path)
    write_shard(out, "2024-05-01", "k1", {"area_ratios": to_table("area_ratios", [area_row("a")]),
                                          "errors": to_table("errors", [error_row("b")])})
    write_shard(out, "2024-05-01", "k1", {"area_ratios": to_table("area_ratios",
                                                                  [area_row("a"), area_row("b")])})
    assert image_uris(out) == ["a", "b"]
    assert not Path(table_file(out, "errors", "2024-05-01", "k1")).exists()
    with pytest.raises(ValueError, match="schema"):
        write_shard(out, "2024-05-01", "k1", {"errors": to_table("area_ratios", [area_row("a")])})


def test_drop_images_rewrites_or_deletes_a_shard_file(tmp_path: Path):
    out = str(tmp_path)
    write_shard(out, "d", "k1", {"area_ratios": to_table("area_ratios",
                                                         [area_row("a"), area_row("b")]),
                                 "errors": to_table("errors", [error_row("a")])})
    assert drop_images(out, "d", "k1", ["a"]) == 2
    assert image_uris(out) == ["b"]
    assert not Path(table_file(out, "errors", "d", "k1")).exists()
    assert drop_images(out, "d", "k1", ["zzz"]) == 0


def entry(uri: str, shard: str, fingerprint: str = "size=1", outcome: str = "ok",
          run_date: str = "2024-05-01", model: str = "roads@3") -> manifest.Entry:
    return manifest.Entry(uri, run_date, fingerprint, model, shard, outcome)


def test_commit_moves_an_image_s_rows_to_its_newest_shard(tmp_path: Path):
    out = str(tmp_path)
    write_shard(out, "2024-05-01", "old", {"area_ratios": to_table(
        "area_ratios", [area_row("a"), area_row("b")])})
    manifest.write_pending(out, [entry("a", "old"), entry("b", "old")])
    assert manifest.commit(out) == {"entries": 2, "committed": 1, "rows_removed": 0}
    # "a" changed and was processed again into shard "new" of the same day.
    write_shard(out, "2024-05-01", "new", {"area_ratios": to_table(
        "area_ratios", [area_row("a", ratio=0.5)])})
    manifest.write_pending(out, [entry("a", "new", fingerprint="size=2")])
    assert manifest.commit(out) == {"entries": 2, "committed": 1, "rows_removed": 1}
    rows = duckdb.sql(f"SELECT image_uri, area_ratio FROM '{out}/area_ratios/*/*.parquet' "
                      "ORDER BY 1").fetchall()
    assert rows == [("a", 0.5), ("b", 0.25)]
    assert not list((tmp_path / "_manifest" / "pending").glob("*.json"))
    assert manifest.commit(out)["committed"] == 0  # idempotent


def test_pending_records_count_before_they_are_committed(tmp_path: Path):
    out = str(tmp_path)
    manifest.write_pending(out, [entry("a", "k"), entry("b", "k", outcome="retry"),
                                 entry("c", "k", outcome="error")])
    current = manifest.load(out)
    assert set(current) == {("a", "2024-05-01"), ("b", "2024-05-01"), ("c", "2024-05-01")}
    # A transient failure is retried; another model has not done anything.
    assert manifest.done_images(current.values(), "roads@3") == {("a", "size=1"), ("c", "size=1")}
    assert manifest.done_images(current.values(), "roads@4") == set()
    with pytest.raises(ValueError, match="one shard"):
        manifest.write_pending(out, [entry("a", "k1"), entry("b", "k2")])
    with pytest.raises(ValueError, match="outcome"):
        entry("a", "k", outcome="maybe")
