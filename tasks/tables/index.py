"""Which image was processed, by which model, and in which committed file its rows are.

The index is append-only: each commit writes, per ``run_date`` it touched, one file
``_manifest/index/run_date=D/<gen>.parquet`` with its entries. An image's current entry in a
partition is the one of the highest generation. A commit's index cost is therefore its own
size, not the history's; when a partition holds more than ``COMPACT_AFTER`` files, the commit
writes that partition's current entries as one file instead and removes the older ones.

An image is **done** for a model when its current entry has its URI, its current fingerprint
(ETag or size + mtime), that model (``name@version``), and a final outcome (a result, or a bad
file). ``retry`` outcomes (read errors, a failing model call) are tried again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from tasks import storage
from tasks.parquet_io import read_file
from tasks.parquet_schemas import PARTITION_KEY
from tasks.tables.keys import Generation, ImageKey, RunDate, Stem
from tasks.tables.layout import generation_of, manifest

OUTCOMES = ("ok", "error", "retry")
COMPACT_AFTER = 16
RELIST_ATTEMPTS = 5
KEY = ("image_uri", "run_date")

INDEX_SCHEMA = pa.schema(
    [
        ("image_uri", pa.string()),
        ("run_date", pa.string()),
        ("fingerprint", pa.string()),
        ("model", pa.string()),
        ("file", pa.string()),
        ("outcome", pa.string()),
    ]
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image's processing in one ``run_date`` partition."""

    image_uri: str
    run_date: RunDate
    fingerprint: str
    model: str  # name@version
    file: Stem  # its rows are in <table>/run_date=<run_date>/part-<file>.parquet
    outcome: str  # "ok", "error" (a bad file: final) or "retry" (transient: try again)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")

    @property
    def key(self) -> ImageKey:
        return ImageKey(self.image_uri, self.run_date)


def partition_files(output_uri: str, run_date: RunDate) -> list[str]:
    """The index files of one partition, oldest generation first."""
    folder = manifest(output_uri, "index", f"{PARTITION_KEY}={run_date}")
    return _by_generation(storage.list_files(folder, (".parquet",)))


def read_current(output_uri: str, run_dates: Iterable[RunDate] | None = None) -> pa.Table:
    """The current entry of every image, in the given partitions (default: all).

    Returns:
        A table with the ``INDEX_SCHEMA`` columns, one row per ``(image_uri, run_date)``.
    """
    days = None if run_dates is None else sorted(set(run_dates))
    for _ in range(RELIST_ATTEMPTS - 1):
        try:
            return _read_listed(output_uri, days)
        except FileNotFoundError:
            # A commit or compaction replaced index files between our listing and our read.
            # It adds the new file before it removes the old ones, so a new listing is whole.
            continue
    return _read_listed(output_uri, days)


def _read_listed(output_uri: str, days: list[RunDate] | None) -> pa.Table:
    if days is None:
        files = _by_generation(storage.list_files(manifest(output_uri, "index"), (".parquet",)))
    else:
        files = [uri for day in days for uri in partition_files(output_uri, day)]
    return current(
        [_with_generation(read_file(uri), generation_of(uri) or Generation(0)) for uri in files]
    )


def current(tables: Sequence[pa.Table]) -> pa.Table:
    """Latest row per key over tables that carry a ``generation`` column."""
    if not tables:
        return INDEX_SCHEMA.empty_table()
    merged = pa.concat_tables(tables).sort_by([("generation", "ascending")])
    latest = merged.group_by(list(KEY), use_threads=False).aggregate(
        [(name, "last") for name in INDEX_SCHEMA.names if name not in KEY]
    )
    latest = latest.rename_columns([name.removesuffix("_last") for name in latest.column_names])
    return latest.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)


def entries_of(table: pa.Table) -> dict[ImageKey, Entry]:
    """Index rows as entries keyed by ``(image_uri, run_date)``."""
    found = (Entry(**row) for row in table.select(INDEX_SCHEMA.names).to_pylist())
    return {entry.key: entry for entry in found}


def to_table(entries: Iterable[Entry]) -> pa.Table:
    rows = [dataclasses.asdict(entry) for entry in sorted(entries, key=lambda e: e.key)]
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)


def done_images(table: pa.Table, model: str) -> set[tuple[str, str]]:
    """``(image_uri, fingerprint)`` pairs that ``model`` finished (any run_date)."""
    finished = table.filter(
        pc.and_(pc.equal(table["model"], model), pc.not_equal(table["outcome"], "retry"))
    )
    return set(zip(finished["image_uri"].to_pylist(), finished["fingerprint"].to_pylist()))


def _with_generation(table: pa.Table, generation: Generation) -> pa.Table:
    column = pa.array([generation] * table.num_rows, pa.int64())
    return table.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA).append_column("generation", column)


def _by_generation(uris: Iterable[str]) -> list[str]:
    return sorted(
        (uri for uri in uris if generation_of(uri) is not None),
        key=lambda uri: generation_of(uri) or 0,
    )
