"""The commit: staged shards become table files, superseded rows go, the index follows.

Protocol (one committer at a time, under the lease; generation ``g`` = the lease's number):

1. **Finish** every intent a crashed committer left (``_manifest/commits/<gen>.json``), in
   generation order, and drop prepared files that never got an intent.
2. **Prepare**: read the complete staged shards (oldest record first: a later one wins an
   image) and the current index of their run_dates. Decide, per image and run_date, the one
   place its rows will live. Staged files that keep all their images are moved as they are;
   staged or committed files that lose images are rewritten without them into
   ``_manifest/commits/<g>/``; the new index entries go there too.
3. **Commit point**: write the intent ``_manifest/commits/<g>.json`` (moves, removals,
   folders to clean). Before it nothing is visible; after it the next committer finishes it.
4. **Apply**: moves (table files, then index files), then removals (after the intent's
   ``settle_seconds``, which compaction sets), then the consumed staging folders and the
   scratch folder, then the intent itself. Every step can be done twice.
5. **Collect garbage** (``tasks.tables.cleanup``) and release the lease.

Committed file names (``part-<gen>-<n>``) are never reused, so applying an intent twice, or
concurrently with a committer that took over an expired lease, moves and removes the same
files to the same end.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from tasks import storage
from tasks.faults import crash_point
from tasks.parquet_io import parquet_bytes, read_file
from tasks.parquet_schemas import SCHEMAS
from tasks.tables import cleanup, index, lease, staging
from tasks.tables.index import Entry
from tasks.tables.layout import (generation_name, generation_of, index_file, intent_file,
                                 manifest, scratch_folder, table_file)


@dataclasses.dataclass(frozen=True)
class Intent:
    """What one commit changes, written before it changes anything."""

    generation: int
    moves: tuple[tuple[str, str], ...]  # (source, destination), applied in order
    removes: tuple[str, ...]
    cleanup: tuple[str, ...]  # folders and files consumed by the commit
    # Seconds between the last move and the first removal, so that a reader's listing that
    # began before the new files arrived has ended before old ones go (compaction sets it).
    settle_seconds: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Intent:
        raw = json.loads(data)
        return cls(raw["generation"], tuple(tuple(move) for move in raw["moves"]),
                   tuple(raw["removes"]), tuple(raw["cleanup"]),
                   float(raw.get("settle_seconds", 0.0)))


@dataclasses.dataclass(frozen=True)
class CommitResult:
    generation: int
    finished: int  # intents of crashed commits completed
    shards: int  # staged shards committed
    entries: int  # index entries written
    rows_removed: int  # rows of superseded results dropped
    garbage: int  # stale files removed

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def commit(output_uri: str, stale_seconds: float | None = None) -> CommitResult:
    """Take the lease, finish what crashed, commit every complete staged shard, clean up.

    Args:
        output_uri: the batch-inference output folder.
        stale_seconds: files of unfinished shards and temporary files older than this are
            garbage (default ``MRCNN_STALE_SECONDS`` or one hour).
    """
    held = _Renewed(lease.acquire(output_uri))
    try:
        finished = finish_intents(output_uri, held.tick)
        cleanup.drop_unclaimed_scratch(output_uri)
        staged = staging.complete(output_uri)
        legacy, legacy_files = index.legacy_entries(output_uri)
        prepared = _Prepared(output_uri, held.lease.generation)
        if staged or legacy:
            intent = prepared.build(staged, legacy, legacy_files)
            crash_point("prepared")
            held.tick()
            lease.check(held.lease)
            storage.write_bytes(intent_file(output_uri, intent.generation), intent.to_json())
            crash_point("intent-written")
            apply(output_uri, intent, held.tick)
        garbage = cleanup.collect(output_uri, prepared.run_dates, stale_seconds)
        crash_point("before-release")
    finally:
        lease.release(held.lease)
    return CommitResult(held.lease.generation, finished, len(staged), prepared.entry_count,
                        prepared.rows_removed, garbage)


class _Renewed:
    """The held lease, renewed as the commit makes progress (``lease.keep_alive``)."""

    def __init__(self, held: lease.Lease) -> None:
        self.lease = held

    def tick(self) -> None:
        self.lease = lease.keep_alive(self.lease)


def finish_intents(output_uri: str, tick: Callable[[], None] = lambda: None) -> int:
    """Apply every intent left by a crashed commit, oldest first; returns how many."""
    folder = manifest(output_uri, "commits")
    intents = sorted((uri for uri in storage.list_files(folder, (".json",))
                      if generation_of(uri) is not None), key=generation_of)
    for uri in intents:
        apply(output_uri, Intent.from_json(storage.read_bytes(uri)), tick)
    return len(intents)


def apply(output_uri: str, intent: Intent, tick: Callable[[], None] = lambda: None) -> None:
    """Carry out an intent; safe to repeat from any point. ``tick`` runs after each step."""
    for number, (source, destination) in enumerate(intent.moves):
        storage.move(source, destination)
        tick()
        if number == 0:
            crash_point("first-move")
    crash_point("moved")
    if intent.removes and intent.settle_seconds > 0:
        time.sleep(intent.settle_seconds)
    for uri in intent.removes:
        storage.remove(uri)
        tick()
    crash_point("applied")
    for uri in intent.cleanup:
        storage.remove(uri)
    storage.remove(scratch_folder(output_uri, intent.generation))
    storage.remove(intent_file(output_uri, intent.generation))


class _Prepared:
    """Builds one commit's intent, writing the rewritten files into its scratch folder."""

    def __init__(self, output_uri: str, generation: int) -> None:
        self.output_uri = output_uri
        self.generation = generation
        self.run_dates: set[str] = set()
        self.entry_count = 0
        self.rows_removed = 0
        self._table_moves: list[tuple[str, str]] = []
        self._index_moves: list[tuple[str, str]] = []
        self._removes: list[str] = []
        self._stems = (f"{generation_name(generation)}-{n:05d}" for n in range(10 ** 6))

    def build(self, staged: Sequence[staging.StagedShard], legacy: Sequence[Entry],
              legacy_files: Sequence[str]) -> Intent:
        broken = [shard for shard in staged if not _files_present(shard)]
        staged = [shard for shard in staged if shard not in broken]
        self.run_dates = {shard.run_date for shard in staged} | {e.run_date for e in legacy}
        committed = index.entries_of(index.read_current(self.output_uri, self.run_dates))
        in_place, losers = _fold_legacy(legacy)
        holders = {**committed, **in_place}  # where each image's rows are now
        winners: dict[tuple[str, str], int] = {}
        for position, shard in enumerate(staged):  # oldest first: a later record wins
            winners.update((entry.key, position) for entry in shard.entries)
        for key in winners:
            if key in holders:
                losers.setdefault((key[1], holders[key].file), set()).add(key[0])
        final = {key: entry for key, entry in in_place.items() if key not in winners}
        for position, shard in enumerate(staged):
            kept = {e.image_uri for e in shard.entries if winners[e.key] == position}
            final.update((e.key, e) for e in self._take_staged(shard, kept))
        final.update((e.key, e) for e in self._drop_superseded(holders, winners, losers))
        self._write_index(list(final.values()), committed)
        # A record whose files are gone is dropped; its images are processed again.
        cleaned = tuple(shard.folder for shard in (*staged, *broken)) + tuple(legacy_files)
        return Intent(self.generation, tuple(self._table_moves + self._index_moves),
                      tuple(self._removes), cleaned)

    def _take_staged(self, shard: staging.StagedShard, kept: set[str]) -> list[Entry]:
        """Move a staged shard's files into place, rewritten if it lost images to a later one."""
        if not kept:
            return []
        stem = next(self._stems)
        sources = {table: shard.file(table) for table in shard.tables}
        if kept == {e.image_uri for e in shard.entries}:
            self._table_moves += [(uri, table_file(self.output_uri, table, shard.run_date, stem))
                                  for table, uri in sources.items()]
        else:
            self._rewrite(sources, kept, shard.run_date, stem)
        return [dataclasses.replace(e, file=stem) for e in shard.entries if e.image_uri in kept]

    def _drop_superseded(self, holders: dict[tuple[str, str], Entry],
                         winners: dict[tuple[str, str], int],
                         losers: dict[tuple[str, str], set[str]]) -> list[Entry]:
        """Committed files that lose images are removed, their other rows rewritten."""
        by_file: dict[tuple[str, str], list[Entry]] = {}
        for entry in holders.values():
            by_file.setdefault((entry.run_date, entry.file), []).append(entry)
        moved = []
        for (run_date, stem), _ in sorted(losers.items()):
            sources = {table: table_file(self.output_uri, table, run_date, stem)
                       for table in SCHEMAS}
            sources = {t: uri for t, uri in sources.items() if storage.exists(uri)}
            self._removes += sources.values()
            remaining = [e for e in by_file.get((run_date, stem), []) if e.key not in winners]
            if not remaining:
                self.rows_removed += sum(read_file(uri).num_rows for uri in sources.values())
                continue
            new_stem = next(self._stems)
            self._rewrite(sources, {e.image_uri for e in remaining}, run_date, new_stem)
            moved += [dataclasses.replace(e, file=new_stem) for e in remaining]
        return moved

    def _rewrite(self, sources: dict[str, str], kept: set[str], run_date: str,
                 stem: str) -> None:
        """Write the rows of ``kept`` images into scratch files that will move into place."""
        keep = pa.array(sorted(kept), pa.string())
        for table, uri in sources.items():
            rows = read_file(uri)
            kept_rows = rows.filter(pc.is_in(rows["image_uri"], value_set=keep))
            self.rows_removed += rows.num_rows - kept_rows.num_rows
            if not kept_rows.num_rows:
                continue
            scratch = storage.join(scratch_folder(self.output_uri, self.generation),
                                   f"{table}-{stem}.parquet")
            storage.write_bytes(scratch, parquet_bytes(kept_rows))
            destination = table_file(self.output_uri, table, run_date, stem)
            self._table_moves.append((scratch, destination))

    def _write_index(self, new_entries: list[Entry],
                     committed: dict[tuple[str, str], Entry]) -> None:
        """One index file per run_date; a partition with many files is compacted into it."""
        by_date: dict[str, list[Entry]] = {}
        for entry in new_entries:
            by_date.setdefault(entry.run_date, []).append(entry)
        for run_date, entries in sorted(by_date.items()):
            existing = index.partition_files(self.output_uri, run_date)
            if len(existing) >= index.COMPACT_AFTER:
                merged = {k: e for k, e in committed.items() if e.run_date == run_date}
                merged.update((entry.key, entry) for entry in entries)
                entries = list(merged.values())
                self._removes += existing
            scratch = storage.join(scratch_folder(self.output_uri, self.generation),
                                   f"index-{run_date}.parquet")
            storage.write_bytes(scratch, parquet_bytes(index.to_table(entries)))
            destination = index_file(self.output_uri, run_date, self.generation)
            self._index_moves.append((scratch, destination))
            self.entry_count += len(entries)


def _files_present(shard: staging.StagedShard) -> bool:
    return all(storage.exists(shard.file(table)) for table in shard.tables)


def _fold_legacy(legacy: Sequence[Entry]) -> tuple[dict[tuple[str, str], Entry],
                                                   dict[tuple[str, str], set[str]]]:
    """The former layout's entries, latest per image, and the older files that lost images."""
    current: dict[tuple[str, str], Entry] = {}
    losers: dict[tuple[str, str], set[str]] = {}
    for entry in legacy:
        previous = current.get(entry.key)
        if previous is not None and previous.file != entry.file:
            losers.setdefault((entry.run_date, previous.file), set()).add(entry.image_uri)
        current[entry.key] = entry
    return current, losers
