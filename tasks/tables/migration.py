"""The one-off migration of an output written in the first layout, and its record.

The first layout, before the commit protocol, kept which image is in which file in
``_manifest/processed.parquet`` and ``_manifest/pending/*.json`` records (whose ``shard`` is
today's stem), and could leave superseded rows and the files of crashed shards in the tables.
The migration adopts those entries into the index as a commit would (``tasks.tables.plan``:
the latest entry of an image wins, files that lost images are rewritten), removes the table
files no entry names and drops the two old kinds of file, all in one intent, so a crash
mid-way is finished by the next lease holder as any commit is.

The same intent moves in ``_manifest/layout.json``, which records the migration. Every commit
and every compaction calls :func:`ensure` first: one existence check once that record is
there. On an output without it, the first of them migrates; on a new output it finds nothing
to adopt and only writes the record.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence

from tasks import storage
from tasks.parquet_io import read_file
from tasks.parquet_schemas import SCHEMAS
from tasks.tables import index, intents
from tasks.tables.index import Entry
from tasks.tables.intents import Change
from tasks.tables.keys import Generation, RunDate, Stem, StemKey
from tasks.tables.layout import layout_record, manifest, partition, stem_of
from tasks.tables.plan import CommitPlan

LAYOUT = 2  # 1: processed.parquet and pending records; 2: index, staging, intents, leases


@dataclasses.dataclass(frozen=True)
class MigrationResult:
    generation: Generation  # the lease it ran under
    finished: int  # intents of crashed holders completed first
    entries: int  # first-layout entries adopted into the index
    rows_removed: int  # rows of superseded results dropped
    orphans: int  # table files no entry named, removed
    first_layout_files: int  # processed.parquet and pending records removed
    garbage: int  # stale files removed


def is_migrated(output_uri: str) -> bool:
    """True when the output's layout record exists (one existence check)."""
    return storage.exists(layout_record(output_uri))


def ensure(output_uri: str, stale_seconds: float | None = None) -> MigrationResult | None:
    """Migrate ``output_uri`` unless its record says it is done; None when it was."""
    if is_migrated(output_uri):
        return None
    return migrate(output_uri, stale_seconds)


def migrate(output_uri: str, stale_seconds: float | None = None) -> MigrationResult:
    """Adopt a first-layout output into the index and record it; once recorded, a no-op.

    Args:
        output_uri: the batch-inference output folder.
        stale_seconds: the garbage threshold of ``tasks.tables.cleanup``.

    Raises:
        lease.LeaseTimeout: a live holder kept the lease for too long (transient).
    """
    migration = _Migration(output_uri)
    run = intents.run(output_uri, migration.prepare, stale_seconds)
    return MigrationResult(
        run.generation,
        run.finished,
        len(migration.entries),
        migration.plan.rows_removed,
        len(migration.orphans),
        len(migration.files),
        run.garbage,
    )


def first_layout_entries(output_uri: str) -> tuple[list[Entry], list[str]]:
    """The first layout's entries, oldest first, and the files that hold them."""
    whole = manifest(output_uri, "processed.parquet")
    found: list[Entry] = []
    files: list[str] = []
    if storage.exists(whole):
        found += [_entry(row) for row in read_file(whole).to_pylist()]
        files.append(whole)
    records = []
    for uri in storage.list_files(manifest(output_uri, "pending"), (".json",)):
        record = storage.read_json(uri, "pending index record")
        records.append((record["written_at"], uri, record["entries"]))
        files.append(uri)
    for _, _, rows in sorted(records, key=lambda r: (r[0], r[1])):
        found += [_entry(row) for row in rows]
    return found, files


class _Migration:
    """The prepare step: read the first layout under the lease, draft its adoption."""

    def __init__(self, output_uri: str) -> None:
        self.output_uri = output_uri
        self.plan = CommitPlan(output_uri)
        self.entries: list[Entry] = []
        self.files: list[str] = []
        self.orphans: list[str] = []

    def prepare(self, generation: Generation) -> Change:
        if is_migrated(self.output_uri):  # another run migrated while we waited for the lease
            return Change(None, frozenset())
        self.entries, self.files = first_layout_entries(self.output_uri)
        # Listed before the plan writes anything: the files of shards that crashed in the
        # first layout, between their table files and their record.
        self.orphans = _unnamed_files(self.output_uri, self.entries)
        draft = self.plan.build(generation, (), self.entries)
        draft.remove(self.orphans)
        draft.consume(self.files)
        record = {
            "layout": LAYOUT,
            "generation": generation,
            "migrated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "entries": len(self.entries),
            "rows_removed": self.plan.rows_removed,
            "orphans": [storage.relative_path(uri, self.output_uri) for uri in self.orphans],
            "first_layout_files": [
                storage.relative_path(uri, self.output_uri) for uri in self.files
            ],
        }
        draft.write_record(layout_record(self.output_uri), json.dumps(record).encode("utf-8"))
        return Change(draft.intent(), frozenset(self.plan.run_dates))


def _unnamed_files(output_uri: str, entries: Sequence[Entry]) -> list[str]:
    """Table files of the entries' partitions that neither they nor the index name."""
    days = {entry.run_date for entry in entries}
    current = index.read_current(output_uri, days)
    named = {StemKey(entry.run_date, entry.file) for entry in entries}
    named |= set(zip(current["run_date"].to_pylist(), current["file"].to_pylist()))
    return [
        uri
        for table in SCHEMAS
        for day in sorted(days)
        for uri in storage.list_files(partition(output_uri, table, day), (".parquet",))
        if StemKey(day, stem_of(uri)) not in named
    ]


def _entry(row: dict) -> Entry:
    return Entry(
        row["image_uri"],
        RunDate(row["run_date"]),
        row["fingerprint"],
        row["model"],
        Stem(row["shard"]),
        row["outcome"],
    )
