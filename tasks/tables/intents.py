"""Intents: every change to the tables is written down before it is made, then applied.

A commit of staged shards, the compaction of a partition and the migration of a first-layout
output are each one :func:`run` of the same steps, under the lease (generation ``g``):

1. **Recover** (:func:`recover`): apply every intent a crashed holder left
   (``_manifest/commits/<gen>.json``), in generation order, and drop prepared files that never
   got an intent.
2. **Prepare**: the caller's ``prepare(g)`` writes its new files into the scratch folder
   ``_manifest/commits/<g>/`` through a :class:`Draft` and returns the :class:`Change`.
3. **Commit point**: the lease checked once more, the intent written to
   ``_manifest/commits/<g>.json``. Before it nothing is visible; after it the next holder
   finishes it.
4. **Apply** (:func:`apply`): moves (table files, then index and manifest files), a pause of
   ``settle_seconds``, removals, then the consumed files, the scratch folder and the intent
   itself. Every step can be done twice.
5. **Collect garbage** in the partitions the change touched (``tasks.tables.cleanup``), and
   release the lease.

The fault-injection tests stop a process at the named crash points (``tasks.faults``) between
these steps: ``prepared``, ``intent-written``, ``first-move``, ``moved``, ``applied``,
``before-release``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable

import pyarrow as pa

from tasks import storage
from tasks.faults import crash_point
from tasks.parquet_io import parquet_bytes
from tasks.tables import cleanup, index, lease
from tasks.tables.index import Entry
from tasks.tables.keys import Generation, RunDate, Stem
from tasks.tables.layout import (
    generation_of,
    index_file,
    intent_file,
    manifest,
    scratch_folder,
    table_file,
)


@dataclasses.dataclass(frozen=True)
class Intent:
    """What one change does, written before it does anything."""

    generation: Generation
    moves: tuple[tuple[str, str], ...]  # (source, destination), applied in order
    removes: tuple[str, ...]
    cleanup: tuple[str, ...]  # folders and files the change consumed
    # Seconds between the last move and the first removal, so that a reader's listing that
    # began before the new files arrived has ended before old ones go (compaction sets it).
    settle_seconds: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Intent:
        raw = json.loads(data)
        return cls(
            Generation(raw["generation"]),
            tuple(tuple(move) for move in raw["moves"]),
            tuple(raw["removes"]),
            tuple(raw["cleanup"]),
            float(raw.get("settle_seconds", 0.0)),
        )


@dataclasses.dataclass(frozen=True)
class Change:
    """What a prepare step returns."""

    intent: Intent | None  # None: nothing to change
    run_dates: frozenset[RunDate]  # the partitions whose garbage is collected afterwards


@dataclasses.dataclass(frozen=True)
class Run:
    """One change carried out under the lease."""

    generation: Generation  # the lease it ran under
    finished: int  # intents of crashed holders completed first
    applied: bool  # False: the prepare step found nothing to change
    garbage: int  # stale files removed


Prepare = Callable[[Generation], Change]


class Draft:
    """An intent in preparation: the files it wrote to scratch and where they will go."""

    def __init__(self, output_uri: str, generation: Generation) -> None:
        self.output_uri = output_uri
        self.generation = generation
        self._scratch = scratch_folder(output_uri, generation)
        self._table_moves: list[tuple[str, str]] = []
        self._last_moves: list[tuple[str, str]] = []  # index and manifest files
        self._removes: list[str] = []
        self._consumed: list[str] = []

    def move(self, source: str, table: str, run_date: RunDate, stem: Stem) -> None:
        """A finished file (a staged shard's) that moves into a table as it is."""
        self._table_moves.append((source, table_file(self.output_uri, table, run_date, stem)))

    def write(self, table: str, rows: pa.Table, run_date: RunDate, stem: Stem) -> None:
        """Rows that become ``<table>/run_date=<run_date>/part-<stem>.parquet`` at the apply."""
        source = self._scratch_file(f"{table}-{stem}.parquet", parquet_bytes(rows))
        self.move(source, table, run_date, stem)

    def write_index(self, run_date: RunDate, entries: Iterable[Entry]) -> None:
        """The partition's new index file, moved in after the table files it names."""
        source = self._scratch_file(
            f"index-{run_date}.parquet", parquet_bytes(index.to_table(entries))
        )
        self._last_moves.append((source, index_file(self.output_uri, run_date, self.generation)))

    def write_record(self, destination: str, data: bytes) -> None:
        """A manifest file that appears with the change, after its table and index files."""
        name = destination.rstrip("/").rsplit("/", 1)[-1]
        self._last_moves.append((self._scratch_file(name, data), destination))

    def remove(self, uris: Iterable[str]) -> None:
        """Files the change replaces, removed after every move."""
        self._removes.extend(uris)

    def consume(self, uris: Iterable[str]) -> None:
        """Files and folders the change used up (staged shards), removed last."""
        self._consumed.extend(uris)

    def intent(self, settle_seconds: float = 0.0) -> Intent:
        return Intent(
            self.generation,
            (*self._table_moves, *self._last_moves),
            tuple(self._removes),
            tuple(self._consumed),
            settle_seconds,
        )

    def _scratch_file(self, name: str, data: bytes) -> str:
        uri = storage.join(self._scratch, name)
        storage.write_bytes(uri, data)
        return uri


def run(output_uri: str, prepare: Prepare, stale_seconds: float | None = None) -> Run:
    """Carry out one change under the lease: the five steps of the module docstring.

    Args:
        output_uri: the batch-inference output folder.
        prepare: called with the lease's generation once crashed intents are finished.
        stale_seconds: the garbage threshold of ``tasks.tables.cleanup``.

    Raises:
        lease.LeaseTimeout: a live holder kept the lease for too long (transient).
        lease.LeaseLost: our lease passed to another run before the commit point.
    """
    with lease.holding(output_uri) as held:
        finished = recover(output_uri, held)
        change = prepare(held.generation)
        if change.intent is not None:
            crash_point("prepared")
            held.tick()
            held.check()
            storage.write_bytes(
                intent_file(output_uri, change.intent.generation), change.intent.to_json()
            )
            crash_point("intent-written")
            apply(output_uri, change.intent, held.tick)
        garbage = cleanup.collect(output_uri, change.run_dates, stale_seconds)
        crash_point("before-release")
    return Run(held.generation, finished, change.intent is not None, garbage)


def recover(output_uri: str, held: lease.Held) -> int:
    """Finish what crashed holders left: their intents, then their unclaimed scratch.

    Returns:
        How many intents were applied.
    """
    finished = finish_intents(output_uri, held.tick)
    cleanup.drop_unclaimed_scratch(output_uri)
    return finished


def finish_intents(output_uri: str, tick: Callable[[], None] = lambda: None) -> int:
    """Apply every intent left by a crashed holder, oldest first; returns how many."""
    folder = manifest(output_uri, "commits")
    intents = sorted(
        (uri for uri in storage.list_files(folder, (".json",)) if generation_of(uri) is not None),
        key=generation_of,
    )
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
