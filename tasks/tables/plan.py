"""A commit's plan: the one place each image's rows will live, and the files that get there.

Staged shards are taken oldest record first, so a later record wins an image it shares with
an earlier one, and a staged result wins over a committed one. Then, per image and run_date:

- a staged shard that keeps all its images moves into the tables as it is;
- a staged shard or a committed file that loses images is rewritten without them into the
  scratch folder; a committed file that loses all of them is removed;
- the new index entries are written per run_date, one file each (the partition's whole index
  when it already has ``index.COMPACT_AFTER`` files, which then go).

*Adopted* entries are rows already in the table folders that the index does not name yet
(``tasks.tables.migration`` adopts a first-layout output's); among them too the latest entry
of an image wins, and the file of an earlier one loses that image.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from tasks import storage
from tasks.parquet_io import read_file
from tasks.parquet_schemas import SCHEMAS
from tasks.tables import index, staging
from tasks.tables.index import Entry
from tasks.tables.intents import Change, Draft
from tasks.tables.keys import Generation, ImageKey, RunDate, Stem, StemKey
from tasks.tables.layout import stem_name, table_file

Losers = dict[StemKey, set[str]]  # committed stem -> the images it loses


class CommitPlan:
    """Builds one commit's draft and counts what it does."""

    def __init__(self, output_uri: str) -> None:
        self.output_uri = output_uri
        self.run_dates: set[RunDate] = set()
        self.shards = 0  # staged shards taken
        self.entry_count = 0  # index entries written
        self.rows_removed = 0  # rows of superseded results dropped

    def prepare(self, generation: Generation) -> Change:
        """Every complete staged shard, as one change (none when nothing is staged)."""
        staged = staging.complete(self.output_uri)
        self.shards = len(staged)
        if not staged:
            return Change(None, frozenset())
        return Change(self.build(generation, staged).intent(), frozenset(self.run_dates))

    def build(
        self,
        generation: Generation,
        staged: Sequence[staging.StagedShard],
        adopted: Sequence[Entry] = (),
    ) -> Draft:
        """The draft that commits ``staged`` (and ``adopted``); see the module docstring.

        A staged shard whose files are gone is consumed without its rows: its images will
        be processed again.
        """
        self._draft = Draft(self.output_uri, generation)
        self._stems = (stem_name(generation, number) for number in itertools.count())
        broken = [shard for shard in staged if not _files_present(shard)]
        staged = [shard for shard in staged if shard not in broken]
        self.run_dates = {shard.run_date for shard in staged} | {e.run_date for e in adopted}
        committed = index.entries_of(index.read_current(self.output_uri, self.run_dates))
        in_place, losers = _fold(adopted)
        holders = {**committed, **in_place}  # where each image's rows are now
        winners: dict[ImageKey, int] = {}
        for position, shard in enumerate(staged):  # oldest first: a later record wins
            winners.update((entry.key, position) for entry in shard.entries)
        for key in winners:
            if key in holders:
                losers.setdefault(StemKey(key.run_date, holders[key].file), set()).add(
                    key.image_uri
                )
        final = {key: entry for key, entry in in_place.items() if key not in winners}
        for position, shard in enumerate(staged):
            kept = {e.image_uri for e in shard.entries if winners[e.key] == position}
            final.update((e.key, e) for e in self._take_staged(shard, kept))
        final.update((e.key, e) for e in self._drop_superseded(holders, winners, losers))
        self._write_index(list(final.values()), committed)
        self._draft.consume(shard.folder for shard in (*staged, *broken))
        return self._draft

    def _take_staged(self, shard: staging.StagedShard, kept: set[str]) -> list[Entry]:
        """Move a staged shard's files into place, rewritten if it lost images to a later one."""
        if not kept:
            return []
        stem = next(self._stems)
        sources = {table: shard.file(table) for table in shard.tables}
        if kept == {e.image_uri for e in shard.entries}:
            for table, uri in sources.items():
                self._draft.move(uri, table, shard.run_date, stem)
        else:
            self._rewrite(sources, kept, shard.run_date, stem)
        return [dataclasses.replace(e, file=stem) for e in shard.entries if e.image_uri in kept]

    def _drop_superseded(
        self, holders: dict[ImageKey, Entry], winners: dict[ImageKey, int], losers: Losers
    ) -> list[Entry]:
        """Committed files that lose images are removed, their other rows rewritten."""
        by_stem: dict[StemKey, list[Entry]] = {}
        for entry in holders.values():
            by_stem.setdefault(StemKey(entry.run_date, entry.file), []).append(entry)
        moved = []
        for loser in sorted(losers):
            sources = {
                table: table_file(self.output_uri, table, loser.run_date, loser.stem)
                for table in SCHEMAS
            }
            sources = {t: uri for t, uri in sources.items() if storage.exists(uri)}
            self._draft.remove(sources.values())
            remaining = [e for e in by_stem.get(loser, []) if e.key not in winners]
            if not remaining:
                self.rows_removed += sum(read_file(uri).num_rows for uri in sources.values())
                continue
            new_stem = next(self._stems)
            self._rewrite(sources, {e.image_uri for e in remaining}, loser.run_date, new_stem)
            moved += [dataclasses.replace(e, file=new_stem) for e in remaining]
        return moved

    def _rewrite(
        self, sources: dict[str, str], kept: set[str], run_date: RunDate, stem: Stem
    ) -> None:
        """Write the rows of ``kept`` images into scratch files that will move into place."""
        keep = pa.array(sorted(kept), pa.string())
        for table, uri in sources.items():
            rows = read_file(uri)
            kept_rows = rows.filter(pc.is_in(rows["image_uri"], value_set=keep))
            self.rows_removed += rows.num_rows - kept_rows.num_rows
            if kept_rows.num_rows:
                self._draft.write(table, kept_rows, run_date, stem)

    def _write_index(self, new_entries: list[Entry], committed: dict[ImageKey, Entry]) -> None:
        """One index file per run_date; a partition with many files is compacted into it."""
        by_date: dict[RunDate, list[Entry]] = {}
        for entry in new_entries:
            by_date.setdefault(entry.run_date, []).append(entry)
        for run_date, entries in sorted(by_date.items()):
            existing = index.partition_files(self.output_uri, run_date)
            if len(existing) >= index.COMPACT_AFTER:
                merged = {k: e for k, e in committed.items() if e.run_date == run_date}
                merged.update((entry.key, entry) for entry in entries)
                entries = list(merged.values())
                self._draft.remove(existing)
            self._draft.write_index(run_date, entries)
            self.entry_count += len(entries)


def _files_present(shard: staging.StagedShard) -> bool:
    return all(storage.exists(shard.file(table)) for table in shard.tables)


def _fold(adopted: Sequence[Entry]) -> tuple[dict[ImageKey, Entry], Losers]:
    """The latest adopted entry per image, and the stems of earlier ones, which lose it."""
    current: dict[ImageKey, Entry] = {}
    losers: Losers = {}
    for entry in adopted:
        previous = current.get(entry.key)
        if previous is not None and previous.file != entry.file:
            losers.setdefault(StemKey(entry.run_date, previous.file), set()).add(entry.image_uri)
        current[entry.key] = entry
    return current, losers
