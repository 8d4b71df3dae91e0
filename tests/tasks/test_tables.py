"""The commit protocol on synthetic rows: staging, superseding, the index, the lease, garbage,
the first layout's migration, and a SIGKILL at every step of a commit (locally and on S3)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tasks import storage
from tasks.annotations.rle import rle_string
from tasks.parquet_io import parquet_bytes
from tasks.parquet_schemas import AreaRatioRow, ErrorRow, ImageRow, InstanceRow, rows_to_table
from tasks.tables import (
    Entry,
    commit,
    done_images,
    index,
    lease,
    migration,
    pending_entries,
    read_current,
)
from tasks.tables import stage as stage_tables
from tasks.tables.layout import index_file, layout_record, lease_file, table_file
from tests.support.tables_check import check_invariants, read_table

DAY = "2024-05-01"
NOW = datetime.datetime(2024, 5, 1, 2, 0, 7, tzinfo=datetime.timezone.utc)
REPO = Path(__file__).resolve().parents[2]
COMMIT_STEPS = ("prepared", "intent-written", "first-move", "applied", "before-release")


def area_rows(uri: str, ratio: float = 0.25) -> list[AreaRatioRow]:
    return [
        AreaRatioRow(
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
            run_id="r",
            inferred_at=NOW,
        )
        for class_id in (1, 2)
    ]


def instance_rows(uri: str) -> list[InstanceRow]:
    return [
        InstanceRow(
            image_uri=uri,
            instance_index=class_id - 1,
            class_id=class_id,
            class_name=f"c{class_id}",
            score=0.9,
            y1=0,
            x1=0,
            y2=1,
            x2=2,
            pixel_count=2,
            model_version="3",
            run_id="r",
            mask_rle=rle_string(np.ones((1, 2), bool)),
        )
        for class_id in (1, 2)
    ]


def image_rows(uri: str, fingerprint: str = "size=1") -> list[ImageRow]:
    return [
        ImageRow(
            image_uri=uri,
            image_width=4,
            image_height=2,
            bytes=1,
            fingerprint=fingerprint,
            path_fields={"site": "a"},
            model_version="3",
            run_id="r",
        )
    ]


def stage(
    out: str,
    shard: str,
    good: dict[str, float],
    bad: tuple[str, ...] = (),
    run_date: str = DAY,
    fingerprint: str = "size=1",
    run_id: str = "run",
) -> None:
    """Stage a shard: images with a result (uri -> area ratio) and images that failed."""
    areas = [row for uri, ratio in good.items() for row in area_rows(uri, ratio)]
    found = [row for uri in good for row in instance_rows(uri)]
    failed = [
        ErrorRow(image_uri=uri, error_type="truncated", message="cut", run_id="r", failed_at=NOW)
        for uri in bad
    ]
    described = [row for uri in good for row in image_rows(uri, fingerprint)]  # decoded only
    entries = [Entry(uri, run_date, fingerprint, "roads@3", shard, "ok") for uri in good]
    entries += [Entry(uri, run_date, fingerprint, "roads@3", shard, "error") for uri in bad]
    stage_tables(
        out,
        run_id,
        shard,
        {
            "area_ratios": rows_to_table(AreaRatioRow, areas),
            "instances": rows_to_table(InstanceRow, found),
            "errors": rows_to_table(ErrorRow, failed),
            "images": rows_to_table(ImageRow, described),
        },
        entries,
    )


def ratios(out: str) -> dict[tuple[str, str], float]:
    rows = read_table(out, "area_ratios")
    return {(row["image_uri"], row["run_date"]): row["area_ratio"] for row in rows}


def test_a_commit_moves_staged_shards_into_the_tables_and_indexes_them(tmp_path: Path):
    out = str(tmp_path / "out")
    stage(out, "k1", {"a": 0.25, "b": 0.5}, bad=("x",))
    assert read_table(out, "area_ratios") == []  # staged rows are not in the tables yet
    assert done_images(read_current(out), "roads@3") == set()
    assert {e.image_uri for e in pending_entries(out)} == {"a", "b", "x"}
    result = commit(out)
    assert (result.shards, result.entries, result.rows_removed) == (1, 3, 0)
    assert check_invariants(out, 2, {DAY: {"a", "b", "x"}}) == {
        "area_ratios": 4,
        "instances": 4,
        "errors": 1,
        "images": 2,
    }
    assert done_images(read_current(out), "roads@3") == {
        ("a", "size=1"),
        ("b", "size=1"),
        ("x", "size=1"),
    }
    assert done_images(read_current(out), "roads@4") == set()
    # The documented readers see the committed rows.
    query = (
        f"SELECT count(*), count(DISTINCT image_uri) FROM read_parquet("
        f"'{out}/area_ratios/*/*.parquet', hive_partitioning=true)"
    )
    assert duckdb.sql(query).fetchall() == [(4, 2)]
    assert len(pd.read_parquet(f"{out}/area_ratios")) == 4
    assert commit(out).shards == 0  # nothing staged: nothing changes


def test_an_image_processed_again_keeps_one_result_and_its_neighbours(tmp_path: Path):
    out = str(tmp_path / "out")
    stage(out, "k1", {"a": 0.25, "b": 0.5}, bad=("x",))
    commit(out)
    stage(out, "k2", {"a": 0.75, "x": 0.1}, fingerprint="size=2")  # changed, repaired
    stage(out, "k3", {"b": 0.5}, run_date="2024-05-02")  # another day keeps its own result
    assert commit(out).rows_removed == 2 + 2 + 1 + 1  # a's rows in three tables, x's error
    check_invariants(out, 2, {DAY: {"a", "b", "x"}, "2024-05-02": {"b"}})
    assert ratios(out) == {
        ("a", DAY): 0.75,
        ("b", DAY): 0.5,
        ("x", DAY): 0.1,
        ("b", "2024-05-02"): 0.5,
    }


def test_two_staged_shards_with_one_image_the_later_record_wins(tmp_path: Path):
    out = str(tmp_path / "out")
    stage(out, "k1", {"a": 0.25, "b": 0.5}, run_id="first")
    time.sleep(0.01)
    stage(out, "k2", {"b": 0.75, "c": 0.1}, run_id="second")
    commit(out)
    check_invariants(out, 2, {DAY: {"a", "b", "c"}})
    assert ratios(out)[("b", DAY)] == 0.75


def test_the_index_appends_per_commit_and_compacts_a_busy_partition(tmp_path: Path):
    out = str(tmp_path / "out")
    for number in range(index.COMPACT_AFTER + 3):
        stage(out, f"k{number}", {f"img{number}": 0.5, "again": 0.01 * number})
        commit(out)
    files = index.partition_files(out, DAY)
    assert 1 <= len(files) <= index.COMPACT_AFTER
    current = read_current(out)
    assert current.num_rows == index.COMPACT_AFTER + 4  # every image once, "again" included
    check_invariants(out, 2)
    assert ratios(out)[("again", DAY)] == pytest.approx(0.01 * (index.COMPACT_AFTER + 2))


def test_the_lease_excludes_waits_and_passes_on_from_a_dead_or_expired_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    out = str(tmp_path / "out")
    held = lease.acquire(out)
    with pytest.raises(lease.LeaseTimeout, match="being committed by .* pid"):
        lease.acquire(out, wait_seconds=0.3)
    lease.release(held)
    second = lease.acquire(out, wait_seconds=0)
    assert second.generation == held.generation + 1
    assert not Path(lease_file(out, held.generation)).exists()  # older files are history
    # A holder on this host whose process is gone: taken over at once.
    record = json.loads(Path(lease_file(out, second.generation)).read_text())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    Path(lease_file(out, second.generation)).write_text(json.dumps({**record, "pid": int(dead)}))
    third = lease.acquire(out, wait_seconds=0)
    with pytest.raises(lease.LeaseLost):
        lease.check(second)
    # A holder elsewhere that stopped renewing: taken over once it expired.
    record = json.loads(Path(lease_file(out, third.generation)).read_text())
    Path(lease_file(out, third.generation)).write_text(
        json.dumps({**record, "host": "elsewhere", "expires_at": time.time() - 1})
    )
    assert lease.acquire(out, wait_seconds=0).generation == third.generation + 1
    monkeypatch.setenv("MRCNN_LEASE_SECONDS", "0")
    with pytest.raises(ValueError, match="MRCNN_LEASE_SECONDS"):
        lease.acquire(out)


def test_garbage_of_crashed_runs_goes_once_stale(tmp_path: Path):
    out = str(tmp_path / "out")
    stage(out, "k1", {"a": 0.25})
    commit(out)
    unfinished = tmp_path / "out/_manifest/staging/dead-run/k9"
    unfinished.mkdir(parents=True)
    (unfinished / "area_ratios.parquet").write_bytes(b"half")
    temporary = tmp_path / f"out/area_ratios/run_date={DAY}/.part-x.parquet.0a1b.tmp"
    temporary.write_bytes(b"half")
    prepared = tmp_path / "out/_manifest/commits/000000000099"
    prepared.mkdir(parents=True)
    (prepared / "index-x.parquet").write_bytes(b"x")
    stage(out, "k2", {"b": 0.25})
    commit(out)  # a fresh threshold: the young leftovers stay, the unclaimed preparation goes
    assert unfinished.exists() and temporary.exists() and not prepared.exists()
    stage(out, "k3", {"c": 0.25})
    assert commit(out, stale_seconds=0).garbage == 2
    assert not unfinished.exists() and not temporary.exists()
    check_invariants(out, 2, {DAY: {"a", "b", "c"}})


def write_first_layout(out: str) -> None:
    """An output of the first layout: processed.parquet, a pending record that supersedes one
    of its images, and the orphan file a crash between a shard's files and its record left."""

    def write(stem: str, good: dict[str, float], fingerprint: str = "size=1") -> None:
        areas = [row for uri, ratio in good.items() for row in area_rows(uri, ratio)]
        found = [row for uri in good for row in instance_rows(uri)]
        described = [row for uri in good for row in image_rows(uri, fingerprint)]
        for row_type, rows in ((AreaRatioRow, areas), (InstanceRow, found), (ImageRow, described)):
            storage.write_bytes(
                table_file(out, row_type.TABLE, DAY, stem),
                parquet_bytes(rows_to_table(row_type, rows)),
            )

    write("old", {"a": 0.25, "b": 0.5})
    write("new", {"a": 0.75}, "size=2")
    write("orphan", {"b": 0.9, "c": 0.9})
    storage.write_bytes(f"{out}/_manifest/processed.parquet", parquet_bytes(first_index()))
    record = {
        "written_at": 1.0,
        "entries": [
            {
                "image_uri": "a",
                "run_date": DAY,
                "fingerprint": "size=2",
                "model": "roads@3",
                "shard": "new",
                "outcome": "ok",
            }
        ],
    }
    storage.write_bytes(f"{out}/_manifest/pending/{DAY}-new.json", json.dumps(record).encode())


def first_index() -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "image_uri": u,
                "run_date": DAY,
                "fingerprint": "size=1",
                "model": "roads@3",
                "shard": "old",
                "outcome": "ok",
            }
            for u in ("a", "b")
        ]
    )


def check_first_layout_migrated(out: str, staged: tuple[str, ...] = ()) -> dict:
    """The first layout's results are in the index, its files gone; returns the record."""
    assert {uri: ratio for (uri, _), ratio in ratios(out).items()} == {
        "a": 0.75,
        "b": 0.5,
        **{uri: 0.3 for uri in staged},
    }
    assert not Path(f"{out}/_manifest/processed.parquet").exists()
    assert not list(Path(out).rglob("pending/*.json"))
    check_invariants(out, 2, {DAY: {"a", "b", *staged}})
    assert done_images(read_current(out), "roads@3") == {
        ("a", "size=2"),
        ("b", "size=1"),
        *((uri, "size=1") for uri in staged),
    }
    return json.loads(Path(layout_record(out)).read_text())


def test_an_output_of_the_first_layout_is_migrated_once_by_the_first_commit(tmp_path: Path):
    out = str(tmp_path / "out")
    write_first_layout(out)
    stage(out, "k1", {"c": 0.3})  # a staged result wins over the orphan file's row of c
    assert not migration.is_migrated(out)
    assert commit(out).shards == 1
    record = check_first_layout_migrated(out, ("c",))
    assert record["layout"] == migration.LAYOUT and record["entries"] == 3
    assert record["rows_removed"] == 5  # a's superseded rows in old: 2 + 2 + 1 (images)
    assert sorted(record["orphans"]) == [
        f"{table}/run_date={DAY}/part-orphan.parquet"
        for table in ("area_ratios", "images", "instances")
    ]
    assert sorted(record["first_layout_files"]) == [
        f"_manifest/pending/{DAY}-new.json",
        "_manifest/processed.parquet",
    ]
    # Later commits skip the migration: a first-layout file that appears now is not read.
    storage.write_bytes(f"{out}/_manifest/processed.parquet", parquet_bytes(first_index()))
    stage(out, "k2", {"d": 0.3})
    commit(out)
    assert Path(f"{out}/_manifest/processed.parquet").exists()
    assert json.loads(Path(layout_record(out)).read_text()) == record
    assert done_images(read_current(out), "roads@3") == {
        ("a", "size=2"),
        ("b", "size=1"),
        ("c", "size=1"),
        ("d", "size=1"),
    }
    assert migration.migrate(out).entries == 0  # recorded: a no-op


def test_a_new_output_records_its_layout_on_its_first_commit(tmp_path: Path):
    out = str(tmp_path / "out")
    stage(out, "k1", {"a": 0.25})
    first = commit(out)
    record = json.loads(Path(layout_record(out)).read_text())
    assert (record["entries"], record["first_layout_files"]) == (0, [])
    assert record["generation"] == first.generation - 1  # its own intent, before the commit's
    stage(out, "k2", {"b": 0.25})
    assert commit(out).generation == first.generation + 1  # no second migration
    check_invariants(out, 2, {DAY: {"a", "b"}})


@pytest.mark.parametrize("step", ("prepared", "first-move", "moved"))
def test_a_migration_killed_at_a_step_is_finished_by_the_next_commit(tmp_path: Path, step: str):
    out = str(tmp_path / "out")
    write_first_layout(out)
    commit_killed_at(out, step)
    assert commit(out, stale_seconds=0).shards == 0
    assert check_first_layout_migrated(out)["entries"] == 3


def commit_killed_at(out: str, step: str, env: dict[str, str] | None = None) -> None:
    """Run a commit in a child process that SIGKILLs itself at ``step``."""
    code = "import sys; from tasks.tables import commit; commit(sys.argv[1])"
    child = subprocess.run(
        [sys.executable, "-c", code, out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {}), "MRCNN_CRASH_AT": step},
    )
    assert child.returncode == -9, child.stderr[-2000:]


def crash_and_recover(out: str, step: str, env: dict[str, str] | None = None) -> None:
    stage(out, "k1", {"a": 0.25, "b": 0.5}, bad=("x",))
    commit(out)
    stage(out, "k2", {"a": 0.75, "x": 0.1, "d": 0.2}, fingerprint="size=2")
    stage(out, "k3", {"e": 0.3}, bad=("f",))
    commit_killed_at(out, step, env)
    for reader in (lambda: read_table(out, "area_ratios"), lambda: read_current(out)):
        reader()  # whatever the crash left, the readers can read it
    commit(out, stale_seconds=0)
    check_invariants(out, 2, {DAY: {"a", "b", "d", "e", "f", "x"}})
    assert ratios(out)[("a", DAY)] == 0.75 and ratios(out)[("x", DAY)] == 0.1


@pytest.mark.parametrize("step", COMMIT_STEPS)
def test_a_commit_killed_at_any_step_is_finished_by_the_next(tmp_path: Path, step: str):
    crash_and_recover(str(tmp_path / "out"), step)


@pytest.mark.parametrize("step", ("intent-written", "first-move"))
def test_on_s3_a_commit_killed_mid_way_is_finished_by_the_next(s3_env, s3_prefix: str, step: str):
    crash_and_recover(f"{s3_prefix}/out", step, s3_env.environment)


def test_index_files_sort_by_generation(tmp_path: Path):
    assert index_file("o", DAY, 12).endswith(f"run_date={DAY}/000000000012.parquet")
    with pytest.raises(ValueError, match="one run_date"):
        stage_tables(
            "o",
            "r",
            "k",
            {},
            [Entry("a", DAY, "f", "m", "k", "ok"), Entry("b", "2024-05-02", "f", "m", "k", "ok")],
        )
    with pytest.raises(ValueError, match="outcome"):
        Entry("a", DAY, "f", "m", "k", "maybe")


def test_a_working_holder_renews_its_lease_and_learns_when_it_lost_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    out = str(tmp_path / "out")
    monkeypatch.setenv("MRCNN_LEASE_SECONDS", "0.6")
    held = lease.acquire(out)
    first = json.loads(Path(lease_file(out, held.generation)).read_text())["expires_at"]
    time.sleep(0.25)
    renewed = lease.keep_alive(held)
    assert json.loads(Path(lease_file(out, held.generation)).read_text())["expires_at"] > first
    with pytest.raises(lease.LeaseTimeout):
        lease.acquire(out, wait_seconds=0.1)  # renewed: still held
    time.sleep(0.7)
    lease.acquire(out, wait_seconds=0)  # expired: another committer takes over
    time.sleep(0.25)
    with pytest.raises(lease.LeaseLost, match="passed to another run"):
        lease.keep_alive(renewed)


CONCURRENT_COMMITTER = """
import sys
from tests.tasks.test_tables import stage
from tasks.tables import commit
out, name = sys.argv[1], sys.argv[2]
for round in range(4):
    stage(out, f"{name}-{round}", {f"img{i}": 0.1 * round for i in range(round, round + 6)},
          run_id=name)
    commit(out)
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_committers_in_three_processes_keep_one_result_per_image(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
):
    if where == "s3":
        server = request.getfixturevalue("s3_env")
        out, env = f"{request.getfixturevalue('s3_prefix')}/out", server.environment
    else:
        out, env = str(tmp_path / "out"), {}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_COMMITTER, out, f"p{n}"],
            cwd=REPO,
            env={**os.environ, **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    errors = [child.communicate(timeout=120)[1] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0], errors
    check_invariants(out, 2, {DAY: {f"img{i}" for i in range(9)}})
    assert commit(out).shards == 0


def test_a_record_whose_files_are_gone_is_dropped_and_its_images_done_again(tmp_path: Path):
    out = str(tmp_path / "out")
    stage(out, "k1", {"a": 0.25})
    stage(out, "k2", {"b": 0.5})
    next(Path(out, "_manifest/staging/run/k2").glob("area_ratios.parquet")).unlink()
    commit(out)
    check_invariants(out, 2, {DAY: {"a"}})
    assert {e.image_uri for e in pending_entries(out)} == set()  # b is not done: it is redone
