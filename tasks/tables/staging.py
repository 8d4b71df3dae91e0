"""Where a shard's rows wait until a commit takes them into the tables.

A shard writes each table's rows to ``_manifest/staging/<run_id>/<shard>/<table>.parquet``
and then, last, ``record.json`` (its index entries and the tables it has). A folder with a
record is **complete**: any later commit takes it, whichever run that commit belongs to. A
folder without one belongs to a shard still writing or one that died; it is removed once it
is older than the stale threshold (``tasks.tables.cleanup``).
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import time
from collections.abc import Mapping, Sequence

import pyarrow as pa

from tasks import storage
from tasks.faults import crash_point
from tasks.parquet_io import parquet_bytes
from tasks.parquet_schemas import SCHEMAS
from tasks.tables.index import Entry
from tasks.tables.keys import RunDate, RunId, ShardName
from tasks.tables.layout import manifest, staging_folder

RECORD = "record.json"


@dataclasses.dataclass(frozen=True)
class StagedShard:
    """A complete staged shard."""

    folder: str
    written_at: float
    entries: tuple[Entry, ...]
    tables: tuple[str, ...]  # the tables it has rows for

    @property
    def run_date(self) -> RunDate:
        return self.entries[0].run_date

    def file(self, table: str) -> str:
        return storage.join(self.folder, f"{table}.parquet")


def stage(
    output_uri: str,
    run_id: RunId,
    shard: ShardName,
    tables: Mapping[str, pa.Table],
    entries: Sequence[Entry],
) -> StagedShard:
    """Write a shard's tables and then its record; returns what a commit will see.

    Raises:
        ValueError: entries of several run_dates, none at all, or a table off its schema.
    """
    dates = {entry.run_date for entry in entries}
    if len(dates) != 1:
        raise ValueError(f"a staged shard holds one run_date, got {sorted(dates)}")
    folder = staging_folder(output_uri, run_id, shard)
    written = []
    for name, table in sorted(tables.items()):
        if not table.num_rows:
            continue
        if not table.schema.equals(SCHEMAS[name]):
            raise ValueError(f"{name} table does not have the {name} schema:\n{table.schema}")
        storage.write_bytes(storage.join(folder, f"{name}.parquet"), parquet_bytes(table))
        written.append(name)
    crash_point("shard-staged")
    staged = StagedShard(folder, time.time(), tuple(entries), tuple(written))
    record = {
        "written_at": staged.written_at,
        "tables": written,
        "entries": [dataclasses.asdict(entry) for entry in entries],
    }
    storage.write_bytes(storage.join(folder, RECORD), json.dumps(record).encode("utf-8"))
    crash_point("shard-recorded")
    return staged


def folders(output_uri: str) -> dict[str, dict[str, float]]:
    """Every staging folder and its files' ages in seconds."""
    found: dict[str, dict[str, float]] = {}
    for uri, age in storage.list_ages(manifest(output_uri, "staging")).items():
        found.setdefault(posixpath.dirname(uri), {})[uri] = age
    return found


def complete(output_uri: str) -> list[StagedShard]:
    """The complete staged shards, oldest record first."""
    staged = []
    for folder, files in folders(output_uri).items():
        record_uri = storage.join(folder, RECORD)
        if record_uri not in files:
            continue
        record = storage.read_json(record_uri, "staged shard record")
        entries = tuple(Entry(**entry) for entry in record["entries"])
        if entries:
            staged.append(
                StagedShard(folder, record["written_at"], entries, tuple(record["tables"]))
            )
    return sorted(staged, key=lambda shard: (shard.written_at, shard.folder))


def pending_entries(output_uri: str) -> list[Entry]:
    """Entries of complete staged shards (done, though not yet committed)."""
    return [entry for shard in complete(output_uri) for entry in shard.entries]
