"""Compaction of a month's small committed files: same rows in one file per partition and
table, the index repointed, idempotent, repaired after a SIGKILL at every step, and what a
reader that globs the tables sees meanwhile (``tasks.tables.compaction``)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mrcnn_pipeline.duckdb_views import write_views
from tasks import storage
from tasks.parquet_schemas import (
    ROW_TYPES,
    SCHEMA_VERSION,
    SCHEMAS,
    VERSION_KEY,
    columns,
    schema_version,
)
from tasks.tables import commit, done_images, index, pending_entries, read_current
from tasks.tables.compaction import compact_month, is_compacted, month_days, plan_partition
from tests.support.tables_check import check_invariants, read_table
from tests.tasks.test_tables import stage

REPO = Path(__file__).resolve().parents[2]
MONTH = "2024-05"
DAYS = ("2024-05-01", "2024-05-02", "2024-05-17")
OTHER_MONTH = "2024-06-01"
TABLES = tuple(SCHEMAS)  # every committed table, whichever the protocol has now
STEPS = ("prepared", "intent-written", "first-move", "moved", "applied", "before-release")
Key = tuple[str, str, int]  # image_uri, run_date, class_id


def build_month(out: str, days: tuple[str, ...] = DAYS, shards: int = 6) -> dict[str, set[str]]:
    """One commit per shard of two images (a failed one in every third): many small files.

    Returns:
        The images of every run_date (the month's and one of the next month).
    """
    expected: dict[str, set[str]] = {}
    for day in (*days, OTHER_MONTH):
        for number in range(shards):
            good = {f"{day}/img{number}a": 0.25, f"{day}/img{number}b": 0.5}
            bad = (f"{day}/bad{number}",) if number % 3 == 0 else ()
            stage(out, f"{day}-k{number}", good, bad, run_date=day)
            commit(out)
            expected.setdefault(day, set()).update({*good, *bad})
    # An image processed again: the commit rewrites the file that held it (another stem).
    stage(out, "again", {f"{days[0]}/img0a": 0.75}, run_date=days[0], fingerprint="size=2")
    commit(out)
    return expected


def contents(out: str) -> dict[str, list[tuple]]:
    """Every table's rows, sorted: equal before and after means the same rows, no more."""
    return {
        table: sorted(tuple(sorted(row.items())) for row in read_table(out, table))
        for table in TABLES
    }


def part_files(out: str, table: str, day: str) -> list[str]:
    return storage.list_files(storage.join(out, table, f"run_date={day}"), (".parquet",))


def everything(out: str) -> list[str]:
    return storage.list_files(out)


def test_a_month_of_small_files_becomes_one_file_per_partition_with_the_same_rows(tmp_path: Path):
    out = str(tmp_path / "out")
    expected = build_month(out)
    before = contents(out)
    untouched = {table: part_files(out, table, OTHER_MONTH) for table in TABLES}
    assert all(len(part_files(out, "area_ratios", day)) >= 6 for day in DAYS)
    done = done_images(read_current(out), "roads@3")

    result = compact_month(out, MONTH, settle_seconds=0)
    assert [p.run_date for p in result.partitions] == list(DAYS)
    assert all(p.stems_written == 1 and p.stems_merged >= 6 for p in result.partitions)
    for day in DAYS:
        assert [len(part_files(out, table, day)) for table in TABLES] == [1] * len(TABLES), day
    assert {table: part_files(out, table, OTHER_MONTH) for table in TABLES} == untouched
    assert contents(out) == before
    check_invariants(out, 2, expected)
    # The index points at the compacted files; planning the next run finds every image done.
    current = index.entries_of(read_current(out))
    for entry in current.values():
        if entry.run_date in DAYS:
            assert is_compacted(entry.file)
            table = "errors" if entry.outcome == "error" else "area_ratios"
            assert Path(
                out, table, f"run_date={entry.run_date}", f"part-{entry.file}.parquet"
            ).is_file()
    assert done_images(read_current(out), "roads@3") == done and pending_entries(out) == []
    assert len(index.partition_files(out, DAYS[0])) == 1
    # Idempotent: a second run takes no lease and changes nothing.
    files = everything(out)
    again = compact_month(out, MONTH, settle_seconds=0)
    assert (again.partitions, again.finished) == ((), 0)
    assert everything(out) == files


def test_a_large_partition_gets_files_of_about_the_target_and_new_small_files_merge_later(
    tmp_path: Path,
):
    out = str(tmp_path / "out")
    expected = build_month(out, days=DAYS[:1], shards=8)
    before = contents(out)
    sizes = [stem.size for group in plan_partition(out, DAYS[0]).groups for stem in group]
    target = sum(sizes) // 2  # two files, each of about half the partition
    assert max(sizes) < target
    result = compact_month(out, MONTH, target_bytes=target, settle_seconds=0)
    assert [p.stems_written for p in result.partitions] == [2]
    assert len(part_files(out, "area_ratios", DAYS[0])) == 2
    assert contents(out) == before
    check_invariants(out, 2, expected)
    assert compact_month(out, MONTH, target_bytes=target, settle_seconds=0).partitions == ()
    # A later commit into the compacted partition: its small file joins a compacted one.
    stage(out, "late", {f"{DAYS[0]}/late": 0.1}, run_date=DAYS[0])
    commit(out)
    assert len(part_files(out, "area_ratios", DAYS[0])) == 3
    assert compact_month(out, MONTH, target_bytes=target, settle_seconds=0).partitions != ()
    assert len(part_files(out, "area_ratios", DAYS[0])) <= 2
    check_invariants(out, 2, {**expected, DAYS[0]: expected[DAYS[0]] | {f"{DAYS[0]}/late"}})


def written_in(version: int, table: str, rows: pa.Table) -> pa.Table:
    """``rows`` as the software of schema ``version`` wrote them: the later columns absent."""
    later = [
        name
        for name, spec in columns(ROW_TYPES[table]).items()
        if spec.added is not None and spec.added > version
    ]
    return rows.drop_columns(later).replace_schema_metadata(
        None if version == 1 else {VERSION_KEY: str(version)}
    )  # 1: no version recorded


def with_defaults(table: str, row: dict, version: int) -> dict:
    """A row of a file of ``version`` as read in the current one: later columns defaulted."""
    return {
        **row,
        **{
            name: spec.default
            for name, spec in columns(ROW_TYPES[table]).items()
            if spec.added is not None and spec.added > version
        },
    }


def test_stems_of_older_schema_versions_are_upcast_and_compacted_with_the_rest(tmp_path: Path):
    out = str(tmp_path / "out")
    expected = build_month(out, days=DAYS[:1], shards=4)
    rows_before = {table: read_table(out, table) for table in TABLES}
    (group,) = plan_partition(out, DAYS[0]).groups
    # One stem as the previous version wrote it, one as the first (no instances.mask_rle).
    written = {}  # (table, image_uri) -> the version its file has
    for version, stem in ((SCHEMA_VERSION - 1, group[0]), (1, group[1])):
        for table, uri, _ in stem.files:
            rows = pq.read_table(uri)
            pq.write_table(written_in(version, table, rows), uri)
            written.update(((table, image), version) for image in rows["image_uri"].to_pylist())
    (result,) = compact_month(out, MONTH, settle_seconds=0).partitions
    assert (result.stems_upcast, result.stems_skipped) == (2, 0)
    assert result.stems_merged == len(group)
    for table in TABLES:  # one file, in the current version
        (compacted,) = part_files(out, table, DAYS[0])
        schema = pq.read_schema(compacted)
        assert schema.equals(SCHEMAS[table]) and schema_version(schema) == SCHEMA_VERSION
    # Every row kept; what the older files lacked holds the column's declared default.
    assert contents(out) == {
        table: sorted(
            tuple(
                sorted(
                    with_defaults(
                        table, row, written.get((table, row["image_uri"]), SCHEMA_VERSION)
                    ).items()
                )
            )
            for row in rows
        )
        for table, rows in rows_before.items()
    }
    assert any(row["mask_rle"] is None for row in read_table(out, "instances"))
    check_invariants(out, 2, expected)
    assert compact_month(out, MONTH, settle_seconds=0).partitions == ()


def test_a_stem_of_a_newer_schema_version_is_left_as_it_is(tmp_path: Path):
    out = str(tmp_path / "out")
    expected = build_month(out, days=DAYS[:1], shards=4)
    before = contents(out)
    newer = part_files(out, "instances", DAYS[0])[0]
    rows = pq.read_table(newer)
    pq.write_table(rows.replace_schema_metadata({VERSION_KEY: str(SCHEMA_VERSION + 1)}), newer)
    (result,) = compact_month(out, MONTH, settle_seconds=0).partitions
    assert (result.stems_skipped, result.stems_upcast, result.stems_written) == (1, 0, 1)
    assert newer in part_files(out, "instances", DAYS[0])
    assert len(part_files(out, "instances", DAYS[0])) == 2
    assert contents(out) == before
    check_invariants(out, 2, expected)


def test_bad_months_are_refused():
    assert month_days("2024-02")[-1] == "2024-02-29" and len(month_days("2023-12")) == 31
    for month in ("2024-13", "2024-5", "May"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_days(month)


def compaction_killed_at(out: str, step: str) -> None:
    """Run a compaction in a child process that SIGKILLs itself at ``step``."""
    code = (
        "import sys; from tasks.tables.compaction import compact_month; "
        "compact_month(sys.argv[1], sys.argv[2], settle_seconds=0)"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, out, MONTH],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MRCNN_CRASH_AT": step},
    )
    assert child.returncode == -9, child.stderr[-2000:]


@pytest.mark.parametrize("repaired_by", ["commit", "compaction"])
@pytest.mark.parametrize("step", STEPS)
def test_a_compaction_killed_at_any_step_is_repaired_by_the_next_run(
    tmp_path: Path, step: str, repaired_by: str
):
    out = str(tmp_path / "out")
    expected = build_month(out, days=DAYS[:2], shards=3)
    before = contents(out)
    compaction_killed_at(out, step)
    for table in TABLES:  # whatever the crash left can be read
        read_table(out, table)
    read_current(out)
    if repaired_by == "commit":  # batch inference's first step
        commit(out, stale_seconds=0)
    else:
        compact_month(out, MONTH, settle_seconds=0, stale_seconds=0)
    check_invariants(out, 2, expected)
    assert contents(out) == before
    compact_month(out, MONTH, settle_seconds=0)
    assert all(len(part_files(out, "area_ratios", day)) == 1 for day in DAYS[:2])
    check_invariants(out, 2, expected)
    assert contents(out) == before


def check_the_documented_view(
    seen: collections.Counter[Key], keys: set[Key], stems: dict[tuple[str, str], str]
) -> None:
    """The documented claim (docs/concepts/tables.md) for one read of ``area_ratios`` during
    compaction: every row once or twice, twice only as whole small files (its small file and the
    compacted one listed)."""
    assert set(seen) == keys, f"missing {keys - set(seen)}, unknown {set(seen) - keys}"
    assert set(seen.values()) <= {1, 2}, collections.Counter(seen.values())
    doubled = {(uri, day) for (uri, day, _), count in seen.items() if count == 2}
    with_rows = {(uri, day) for uri, day, _ in keys}  # failed images have no area_ratios rows
    files: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for image, stem in stems.items():
        if image in with_rows:
            files.setdefault((image[1], stem), set()).add(image)
    for (day, stem), images in files.items():
        assert images <= doubled or not images & doubled, f"part of {day}/{stem} doubled"


def test_a_reader_during_compaction_sees_every_row_once_or_twice_and_the_views_once(tmp_path: Path):
    out = str(tmp_path / "out")
    build_month(out)
    keys = {
        (row["image_uri"], row["run_date"], row["class_id"])
        for row in read_table(out, "area_ratios")
    }
    stems = {key: entry.file for key, entry in index.entries_of(read_current(out)).items()}
    done = done_images(read_current(out), "roads@3")
    observations: list[collections.Counter[Key]] = []
    failures: list[str] = []
    vanished = 0
    stop = threading.Event()

    views = str(tmp_path / "results.duckdb")
    write_views(out, views)
    exact: list[collections.Counter[Key]] = []  # what the views gave

    def read_once(turn: int) -> collections.Counter[Key]:
        if turn % 3 == 2:
            with duckdb.connect(views, read_only=True) as con:
                rows = con.execute(
                    "SELECT image_uri, CAST(run_date AS VARCHAR), class_id FROM area_ratios"
                ).fetchall()
            exact.append(
                collections.Counter((uri, day, int(class_id)) for uri, day, class_id in rows)
            )
            return exact[-1]
        if turn % 3:
            with duckdb.connect() as con:
                rows = con.execute(
                    f"SELECT image_uri, CAST(run_date AS VARCHAR), class_id FROM read_parquet("
                    f"'{out}/area_ratios/*/*.parquet', hive_partitioning = true)"
                ).fetchall()
        else:
            frame = pd.read_parquet(
                f"{out}/area_ratios", columns=["image_uri", "run_date", "class_id"]
            )
            rows = zip(frame["image_uri"], frame["run_date"].astype(str), frame["class_id"])
        return collections.Counter((uri, str(day), int(class_id)) for uri, day, class_id in rows)

    def reader() -> None:
        nonlocal vanished
        turn = 0
        while not stop.is_set():
            turn += 1
            try:
                observations.append(read_once(turn))
            except (FileNotFoundError, duckdb.IOException) as error:
                # Documented: a small file listed, then removed before it was opened.
                if "No such file" not in str(error) and "not found" not in str(error).lower():
                    failures.append(repr(error))
                vanished += 1
            except Exception as error:  # reported below
                failures.append(f"reader: {error!r}")
            try:  # the next run's planning, meanwhile: every image stays done
                if done_images(read_current(out), "roads@3") != done:
                    failures.append("the index lost images")
            except Exception as error:  # reported below
                failures.append(f"index: {error!r}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        compact_month(out, MONTH, settle_seconds=0.4)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not failures, failures[:3]
    for seen in observations:
        check_the_documented_view(seen, keys, stems)
    doubled = sum(1 for seen in observations if 2 in seen.values())
    assert doubled >= 1, f"no read fell in a settle window ({len(observations)} reads)"
    # The DuckDB views (results --duckdb) keep distinct rows: every key once, all the time.
    assert exact and all(seen == collections.Counter(keys) for seen in exact)
    assert all(len(part_files(out, "area_ratios", day)) == 1 for day in DAYS)
    print(f"{len(observations)} reads, {doubled} with doubles, {vanished} vanished")


def test_on_s3_a_compaction_killed_mid_way_is_finished_by_the_next(s3_env, s3_prefix: str):
    out = f"{s3_prefix}/out"
    expected = build_month(out, days=DAYS[:1], shards=3)
    before = contents(out)
    code = (
        "import sys; from tasks.tables.compaction import compact_month; "
        "compact_month(sys.argv[1], sys.argv[2], settle_seconds=0)"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, out, MONTH],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **s3_env.environment, "MRCNN_CRASH_AT": "moved"},
    )
    assert child.returncode == -9, child.stderr[-2000:]
    assert len(part_files(out, "area_ratios", DAYS[0])) > 3  # compacted beside the small ones
    again = compact_month(out, MONTH, settle_seconds=0)
    assert (again.finished, again.partitions) == (1, ())
    assert len(part_files(out, "area_ratios", DAYS[0])) == 1
    check_invariants(out, 2, expected)
    assert contents(out) == before


@pytest.mark.usefixtures("prefect_harness")
def test_the_command_runs_the_flow_and_refuses_a_bad_month(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from mrcnn_pipeline.cli import main

    out = str(tmp_path / "out")
    expected = build_month(out, days=DAYS[:1], shards=3)
    assert main(["compact", "--output", out, "--month", MONTH, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [p["run_date"] for p in summary["partitions"]] == [DAYS[0]]
    assert summary["files_after"] == sum(len(part_files(out, t, DAYS[0])) for t in TABLES)
    assert summary["files_after"] == len(TABLES) < summary["files_before"]
    check_invariants(out, 2, expected)
    assert main(["compact", "--output", out, "--month", MONTH]) == 0
    assert capsys.readouterr().out.startswith(f"{MONTH}: 0 partitions compacted")
    assert main(["compact", "--output", out, "--month", "2024-5"]) == 1
    assert "expected a month YYYY-MM" in capsys.readouterr().err
