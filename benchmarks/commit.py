"""Commit cost against history: does a nightly commit stay as cheap at 1M images as at 100k?

    python -m benchmarks.commit [--history 100000 1000000] [--days 100] [--shards 1 16]
                                [--runs 3] [--quick]

For each history size, a local output folder gets a synthetic index of that many images,
spread over ``--days`` run_date partitions (one compacted index file each), and the table
files of one of those days. Then, each timed ``--runs`` times:

- ``plan``: what every run reads first: the whole current index and the done set;
- ``commit_new_day``: ``tasks.tables.commit`` of ``--shards`` staged shards of 64 new images
  on a new run_date (the nightly case);
- ``commit_same_day``: the same on a day already in history, a quarter of the images
  processed again (their old rows are rewritten out of the committed files);
- ``rewrite_index``: the former protocol's cost, which rewrote the whole index each commit
  (one Parquet file of every entry).

Prints one JSON document; seconds are medians.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from benchmarks import common

if TYPE_CHECKING:
    from tasks.parquet_schemas import AreaRatioRow

SHARD = 64
NOW = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--history", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10k history, 1 run")
    args = parser.parse_args(argv)
    if args.quick:
        args.history, args.runs, args.shards = [10_000], 1, [1]
    document = common.header("commit", argv)
    document["results"] = [
        measure(size, args.days, args.shards, args.runs) for size in args.history
    ]
    document["load_average_end"] = common.load_average()
    common.emit(document)


def measure(size: int, days: int, shard_counts: list[int], runs: int) -> dict[str, Any]:
    from tasks.parquet_io import parquet_bytes
    from tasks.tables import commit, done_images, read_current

    out = tempfile.mkdtemp(prefix="bench-commit-")
    try:
        started = time.perf_counter()
        busy_day = build_history(out, size, days)
        result: dict[str, Any] = {
            "history_images": size,
            "days": days,
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        result["plan"] = timed(runs, lambda: done_images(read_current(out), "m@1"))
        for shards in shard_counts:
            result[f"commit_new_day_{shards}_shards"] = timed(
                runs, lambda n=shards: commit(out), before=lambda n=shards: stage_new(out, n)
            )
            result[f"commit_same_day_{shards}_shards"] = timed(
                runs,
                lambda n=shards: commit(out),
                before=lambda n=shards: stage_again(out, busy_day, size // days, n),
            )
        whole = read_current(out)
        result["index_entries"] = whole.num_rows
        result["rewrite_index"] = timed(runs, lambda: write_temporary(out, parquet_bytes(whole)))
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def timed(runs: int, call, before=None) -> dict[str, Any]:
    seconds = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
        print(f"  {seconds[-1]:.3f} s", file=sys.stderr)
    return common.summarize(seconds)


def day_name(number: int) -> str:
    return (datetime.date(2020, 1, 1) + datetime.timedelta(days=number)).isoformat()


def build_history(out: str, size: int, days: int) -> str:
    """Index files for ``days`` partitions; the table files of the last one. Returns its date."""
    from tasks import storage
    from tasks.parquet_io import parquet_bytes
    from tasks.parquet_schemas import AreaRatioRow, rows_to_table
    from tasks.tables import migration
    from tasks.tables.index import INDEX_SCHEMA
    from tasks.tables.layout import index_file, table_file

    per_day = size // days
    for number in range(days):
        day = day_name(number)
        uris = [f"s3://bucket/{day}/{i:07d}.jpg" for i in range(per_day)]
        files = [f"hist-{i // SHARD:05d}" for i in range(per_day)]
        table = pa.table(
            {
                "image_uri": uris,
                "run_date": [day] * per_day,
                "fingerprint": ["etag=x;size=1"] * per_day,
                "model": ["m@1"] * per_day,
                "file": files,
                "outcome": ["ok"] * per_day,
            },
            schema=INDEX_SCHEMA,
        )
        storage.write_bytes(index_file(out, day, number + 1), parquet_bytes(table))
    busy = day_name(days - 1)
    for start in range(0, per_day, SHARD):
        stop = min(start + SHARD, per_day)
        uris = [f"s3://bucket/{busy}/{i:07d}.jpg" for i in range(start, stop)]
        storage.write_bytes(
            table_file(out, "area_ratios", busy, f"hist-{start // SHARD:05d}"),
            parquet_bytes(rows_to_table(AreaRatioRow, area_rows(uris))),
        )
    bump_lease(out, days + 1)
    migration.migrate(out)  # the history is in the current layout: only its record is written
    return busy


def bump_lease(out: str, generation: int) -> None:
    """Start the lease numbers after the synthetic index's generations."""
    import json

    from tasks import storage
    from tasks.tables.layout import lease_file

    storage.write_bytes(lease_file(out, generation), json.dumps({"released": True}).encode())


def area_rows(uris: list[str]) -> list[AreaRatioRow]:
    from tasks.parquet_schemas import AreaRatioRow

    return [
        AreaRatioRow(
            image_uri=uri,
            image_width=640,
            image_height=480,
            class_id=1,
            class_name="car",
            instance_count=1,
            pixel_count=100,
            area_ratio=0.01,
            model_name="m",
            model_version="1",
            run_id="r",
            inferred_at=NOW,
        )
        for uri in uris
    ]


_counter = iter(range(10**9))


def stage_new(out: str, shards: int) -> None:
    day = f"2030-01-{next(_counter) % 28 + 1:02d}"
    for _ in range(shards):
        number = next(_counter)
        stage(out, day, [f"s3://bucket/new/{number}-{i}.jpg" for i in range(SHARD)], number)


def stage_again(out: str, day: str, per_day: int, shards: int) -> None:
    """Shards of one history day: a quarter of the images seen before, the rest new."""
    for _ in range(shards):
        number = next(_counter)
        old = [f"s3://bucket/{day}/{(number * 7 + i) % per_day:07d}.jpg" for i in range(SHARD // 4)]
        new = [f"s3://bucket/{day}/new-{number}-{i}.jpg" for i in range(SHARD - len(old))]
        stage(out, day, old + new, number)


def stage(out: str, day: str, uris: list[str], number: int) -> None:
    from tasks.parquet_schemas import AreaRatioRow, rows_to_table
    from tasks.tables import Entry
    from tasks.tables import stage as stage_shard

    entries = [Entry(uri, day, "etag=y;size=2", "m@1", "s", "ok") for uri in uris]
    stage_shard(
        out,
        "bench",
        f"shard{number}",
        {"area_ratios": rows_to_table(AreaRatioRow, area_rows(uris))},
        entries,
    )


def write_temporary(out: str, data: bytes) -> None:
    from tasks import storage

    storage.write_bytes(f"{out}/former-index.parquet", data)


if __name__ == "__main__":
    main(sys.argv[1:])
