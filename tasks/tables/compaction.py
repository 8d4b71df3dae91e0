"""Compaction: a month's many small committed files rewritten as a few large ones.

A nightly job that commits often leaves many small files in each ``run_date`` partition, and
every reader opens them all. :func:`compact_month` rewrites each partition of a month, table by
table, into files of at least ``target_bytes`` (one file per partition and table unless the
partition is larger), through the intent protocol of commits (``tasks.tables.intents``), one
partition at a time so that a nightly commit never waits for more than one partition:

1. **Lease**: take the commit lease (no commit interleaves), finish every intent a crashed
   commit or compaction left, drop scratch files that never got an intent.
2. **Plan** (:func:`plan_partition`): the partition's current index and the sizes of its table
   files. A *stem* is the files of one committed shard, one per table, all named
   ``part-<stem>.parquet``; the index says which stem holds each image. A stem is small when its
   largest file is below the target. The small stems, in commit order, are packed into
   ``max(1, total // target)`` groups of about equal size, each to become one compacted stem
   ``<generation>-c<n>``. A partition is left alone unless it has two small stems, one of them
   not written by compaction, so a second run finds nothing to do.
3. **Prepare**: per group and table, the rows of its stems concatenated into one file in the
   commit's scratch folder ``_manifest/commits/<g>/``; the partition's index (every current
   entry, those of compacted stems repointed) as one scratch file. Files of an older schema
   version are upcast (``parquet_schemas.upcast``: the columns added since get their
   defaults) and written in the current version; a stem with a file of a newer version
   (written by newer software) is left as it is.
4. **Commit point**: the intent (``intents.Intent``): moves = the compacted table files, then
   the index file; removes = the small table files, then the partition's older index files.
5. **Apply** (``intents.apply``): the moves, a pause of ``settle_seconds``, the removals; then
   the partition's garbage (``tasks.tables.cleanup``) and the lease is released.

A crash at any point is repaired by the next commit (batch inference commits first thing) or
compaction, exactly as a crashed commit: before the intent nothing is visible and the scratch
is dropped; after it, the intent is applied again from the start, every step idempotent.

**What a reader that globs a table's files sees while a partition is compacted.** The compacted
file is in place before the first small file whose rows it holds is removed, so a reader never
misses a row (no gaps); between the two it lists both, so it may see rows twice (doubles, as
with a row a commit supersedes: invariant I4 in tasks/tables/__init__.py). Precisely, for one
partition of one table: every committed row is seen once or twice, and twice exactly when both
its small file and the compacted file holding it are listed; the doubled rows are therefore
whole small files. At rest, and after the apply, every row once. A query that listed a small
file that is removed before it opens it fails with "file not found" instead (run it again). The
pause between the last move and the first removal lets a listing that began before the
compacted file arrived finish before small files go: a directory listing is not a snapshot, and
one that spanned both could otherwise miss the new file and a removed one.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from tasks import storage
from tasks.failures import InvalidSetting
from tasks.parquet_io import read_file
from tasks.parquet_schemas import SCHEMA_VERSION, SCHEMAS, schema_version, upcast
from tasks.tables import index, intents, lease, migration
from tasks.tables.intents import Change, Draft
from tasks.tables.keys import Generation, RunDate, Stem
from tasks.tables.layout import manifest, partition, stem_name, stem_of

TARGET_BYTES = 64 * 1024 * 1024
SETTLE_SECONDS = 1.0
_COMPACTED = re.compile(r"^\d{12}-c\d{5}$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclasses.dataclass(frozen=True)
class StemFiles:
    """The committed files of one stem in one partition."""

    stem: Stem
    files: tuple[tuple[str, str, int], ...]  # (table, uri, size in bytes)

    @property
    def size(self) -> int:
        """The largest file decides: all tables of a stem move together."""
        return max(size for _, _, size in self.files)


@dataclasses.dataclass(frozen=True)
class PartitionPlan:
    """What compacting one partition would rewrite."""

    run_date: RunDate
    groups: tuple[tuple[StemFiles, ...], ...]  # each group becomes one compacted stem
    kept: int  # stems left as they are: large enough already, or nothing to merge with


@dataclasses.dataclass(frozen=True)
class PartitionResult:
    """One partition's compaction."""

    run_date: RunDate
    generation: Generation  # the lease it ran under
    stems_merged: int  # small stems rewritten
    stems_written: int  # compacted stems
    files_removed: int  # table files
    files_written: int
    rows: int  # rows rewritten, all tables
    stems_upcast: int  # stems with files of an older schema version, rewritten in this one
    stems_skipped: int  # stems with a file of a newer schema version, left as they are


@dataclasses.dataclass(frozen=True)
class CompactionResult:
    """A month's compaction."""

    month: str
    partitions: tuple[PartitionResult, ...]  # those where something was rewritten
    finished: int  # intents of crashed commits or compactions completed

    @property
    def files_before(self) -> int:
        """Table files the compacted partitions had (those now removed)."""
        return sum(partition.files_removed for partition in self.partitions)

    @property
    def files_after(self) -> int:
        """Table files written in their place."""
        return sum(partition.files_written for partition in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        """The fields and the file counts, as JSON-ready values."""
        return {
            **dataclasses.asdict(self),
            "files_before": self.files_before,
            "files_after": self.files_after,
        }


def month_days(month: str) -> list[RunDate]:
    """The ISO dates of a month written ``YYYY-MM``.

    Raises:
        ValueError: not a ``YYYY-MM`` month.
    """
    found = _MONTH.match(month)
    if not found or not 1 <= int(found[2]) <= 12:
        raise InvalidSetting(f"expected a month YYYY-MM, got {month!r}")
    year, number = int(found[1]), int(found[2])
    return [
        RunDate(datetime.date(year, number, day).isoformat())
        for day in range(1, calendar.monthrange(year, number)[1] + 1)
    ]


def is_compacted(stem: Stem) -> bool:
    """A stem written by compaction (``<generation>-c<n>``)."""
    return bool(_COMPACTED.match(stem))


def compact_month(
    output_uri: str,
    month: str,
    target_bytes: int = TARGET_BYTES,
    settle_seconds: float = SETTLE_SECONDS,
    stale_seconds: float | None = None,
) -> CompactionResult:
    """Compact every partition of ``month`` that has small files; see the module docstring.

    Args:
        output_uri: the batch-inference output folder (local or s3://).
        month: ``YYYY-MM``.
        target_bytes: the smallest size a compacted file aims at (64 MiB).
        settle_seconds: pause between adding the compacted files and removing the small ones.
        stale_seconds: the garbage threshold of ``tasks.tables.cleanup``.

    Raises:
        ValueError: a bad month or target.
        lease.LeaseTimeout: a live commit held the lease for too long (transient).
    """
    days = month_days(month)
    if target_bytes <= 0:
        raise InvalidSetting(f"the target size must be positive, got {target_bytes}")
    finished = finish_leftovers(output_uri)
    results = []
    for day in days:
        # A first plan without the lease: partitions with nothing to do cost no lease.
        if plan_partition(output_uri, day, target_bytes).groups:
            result = compact_partition(output_uri, day, target_bytes, settle_seconds, stale_seconds)
            if result is not None:
                results.append(result)
    return CompactionResult(month, tuple(results), finished)


def finish_leftovers(output_uri: str) -> int:
    """Migrate a first-layout output, finish crashed intents, drop unclaimed scratch.

    Takes no lease when the output is migrated and ``_manifest/commits`` is empty.

    Returns:
        The intents of crashed holders completed.
    """
    migrated = migration.ensure(output_uri)
    finished = migrated.finished if migrated is not None else 0
    if not storage.list_files(manifest(output_uri, "commits")):
        return finished
    with lease.holding(output_uri) as held:
        return finished + intents.recover(output_uri, held)


def compact_partition(
    output_uri: str,
    run_date: RunDate,
    target_bytes: int = TARGET_BYTES,
    settle_seconds: float = SETTLE_SECONDS,
    stale_seconds: float | None = None,
) -> PartitionResult | None:
    """Compact one partition under the lease; None when it had nothing to compact."""
    compaction = _Compaction(output_uri, run_date, target_bytes, settle_seconds)
    run = intents.run(output_uri, compaction.prepare, stale_seconds)
    return compaction.result(run.generation) if run.applied else None


def plan_partition(
    output_uri: str, run_date: RunDate, target_bytes: int = TARGET_BYTES
) -> PartitionPlan:
    """Which stems of a partition compaction would merge, and into how many groups."""
    current = index.read_current(output_uri, [run_date])
    referenced = set(current["file"].to_pylist())
    found: dict[Stem, list[tuple[str, str, int]]] = {}
    for table in SCHEMAS:
        sizes = storage.list_sizes(partition(output_uri, table, run_date), (".parquet",))
        for uri, size in sorted(sizes.items()):
            stem = stem_of(uri)
            if stem in referenced:  # unreferenced files are garbage, not rows (cleanup)
                found.setdefault(stem, []).append((table, uri, size))
    stems = [StemFiles(stem, tuple(files)) for stem, files in sorted(found.items())]
    small = [stem for stem in stems if stem.size < target_bytes]
    if len(small) < 2 or all(is_compacted(stem.stem) for stem in small):
        return PartitionPlan(run_date, (), len(stems))
    groups = tuple(group for group in _pack(small, target_bytes) if len(group) > 1)
    return PartitionPlan(run_date, groups, len(stems) - sum(len(group) for group in groups))


def _pack(stems: Sequence[StemFiles], target_bytes: int) -> list[tuple[StemFiles, ...]]:
    """Consecutive groups of about ``total / count`` bytes each, ``count = total // target``.

    Each group but a singleton reaches about the target; order is kept (commit order).
    """
    total = sum(stem.size for stem in stems)
    count = max(1, total // target_bytes)
    groups: list[tuple[StemFiles, ...]] = []
    current: list[StemFiles] = []
    filled = 0
    for stem in stems:
        current.append(stem)
        filled += stem.size
        if len(groups) < count - 1 and filled >= (len(groups) + 1) * total / count:
            groups.append(tuple(current))
            current = []
    if current:
        groups.append(tuple(current))
    return groups


class _Compaction:
    """The prepare step: plan the partition again under the lease, draft its compacted files."""

    def __init__(
        self, output_uri: str, run_date: RunDate, target_bytes: int, settle_seconds: float
    ) -> None:
        self.output_uri = output_uri
        self.run_date = run_date
        self.target_bytes = target_bytes
        self.settle_seconds = settle_seconds
        self._repoint: dict[Stem, Stem] = {}  # old stem -> compacted stem
        self._removed = 0
        self._written = 0
        self._rows = 0
        self._upcast = 0
        self._skipped = 0

    def prepare(self, generation: Generation) -> Change:
        """The intent of this compaction; none when no group had two stems left to merge."""
        nothing = Change(None, frozenset({self.run_date}))
        # Planned again under the lease: a commit may have changed the partition meanwhile.
        plan = plan_partition(self.output_uri, self.run_date, self.target_bytes)
        draft = Draft(self.output_uri, generation)
        stems = (stem_name(generation, number, compacted=True) for number in itertools.count())
        for group in plan.groups:
            self._merge(draft, group, stems)
        if not self._repoint:
            return nothing
        entries = index.entries_of(index.read_current(self.output_uri, [self.run_date]))
        draft.write_index(
            self.run_date,
            [
                dataclasses.replace(entry, file=self._repoint.get(entry.file, entry.file))
                for entry in entries.values()
            ],
        )
        draft.remove(index.partition_files(self.output_uri, self.run_date))
        return Change(draft.intent(self.settle_seconds), nothing.run_dates)

    def result(self, generation: Generation) -> PartitionResult:
        return PartitionResult(
            self.run_date,
            generation,
            len(self._repoint),
            len(set(self._repoint.values())),
            self._removed,
            self._written,
            self._rows,
            self._upcast,
            self._skipped,
        )

    def _merge(self, draft: Draft, group: Sequence[StemFiles], stems: Iterator[Stem]) -> None:
        """One compacted stem, in the current schema version, from the group's stems."""
        tables: dict[str, list[pa.Table]] = {}
        merged: list[StemFiles] = []
        older = 0
        for stem in group:
            read = {table: read_file(uri) for table, uri, _ in stem.files}
            versions = {schema_version(rows.schema) for rows in read.values()}
            if max(versions) > SCHEMA_VERSION:
                self._skipped += 1  # a newer version's columns would be lost
                continue
            older += min(versions) < SCHEMA_VERSION
            merged.append(stem)
            for table, rows in read.items():
                tables.setdefault(table, []).append(upcast(table, rows))
        if len(merged) < 2:
            return
        self._upcast += older
        new_stem = next(stems)
        for table, parts in tables.items():
            rows = pa.concat_tables(parts)
            draft.write(table, rows, self.run_date, new_stem)
            self._written += 1
            self._rows += rows.num_rows
        for stem in merged:
            draft.remove(uri for _, uri, _ in stem.files)
            self._removed += len(stem.files)
            self._repoint[stem.stem] = new_stem
