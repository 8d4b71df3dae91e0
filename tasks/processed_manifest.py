"""Which images have been processed, by which model, and where their rows are.

This is what makes batch inference incremental and keeps the tables free of doubles:

- An image is **done** when an entry has its URI, its current fingerprint (ETag or size +
  mtime) and the run's model (``name@version``), and its outcome was final (a result, or a
  bad file). Transient failures (read errors, a failing model call) are recorded as
  ``retry``: the next run tries again.
- Each shard, after writing its Parquet files, writes a small **pending** record
  ``_manifest/pending/<run_date>-<shard>.json``. :func:`commit` folds pending records into the
  index ``_manifest/processed.parquet``; when an image was processed again into another shard
  file of the same ``run_date``, its rows are first removed from the older file, so each
  partition holds one result per image. Commit runs at the start of a run (finishing one that
  crashed) and at its end; every step is idempotent, so a crash anywhere is repaired by the
  next commit.

Readers of the tables never look here: ``_manifest`` starts with ``_``, which pyarrow datasets
skip, and the table globs (``area_ratios/**/*.parquet``) do not reach it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from tasks import storage
from tasks.parquet_io import drop_images, parquet_bytes, read_file

OUTCOMES = ("ok", "error", "retry")
MANIFEST_FOLDER = "_manifest"

_INDEX_SCHEMA = pa.schema([("image_uri", pa.string()), ("run_date", pa.string()),
                           ("fingerprint", pa.string()), ("model", pa.string()),
                           ("shard", pa.string()), ("outcome", pa.string())])


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image's processing in one ``run_date`` partition."""

    image_uri: str
    run_date: str
    fingerprint: str
    model: str  # name@version
    shard: str  # the shard key: its rows are in part-<shard>.parquet of that partition
    outcome: str  # "ok", "error" (a bad file: final) or "retry" (transient: try again)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")


def index_uri(output_uri: str) -> str:
    """``<output_uri>/_manifest/processed.parquet``."""
    return storage.join(output_uri, MANIFEST_FOLDER, "processed.parquet")


def pending_uri(output_uri: str, run_date: str, shard: str) -> str:
    """Where a shard records its entries until the next commit."""
    return storage.join(output_uri, MANIFEST_FOLDER, "pending", f"{run_date}-{shard}.json")


def write_pending(output_uri: str, entries: Sequence[Entry]) -> str:
    """Record one shard's entries (all of one run_date and shard); returns the record's URI."""
    keys = {(entry.run_date, entry.shard) for entry in entries}
    if len(keys) != 1:
        raise ValueError(f"a pending record holds one shard of one run_date, got {sorted(keys)}")
    (run_date, shard), = keys
    record = {"written_at": time.time(), "entries": [dataclasses.asdict(e) for e in entries]}
    return storage.write_bytes(pending_uri(output_uri, run_date, shard),
                               json.dumps(record).encode("utf-8"))


def load(output_uri: str) -> dict[tuple[str, str], Entry]:
    """The current entries, committed and pending, keyed by ``(image_uri, run_date)``."""
    current, _, _ = _merged(output_uri)
    return current


def done_images(entries: Iterable[Entry], model: str) -> set[tuple[str, str]]:
    """``(image_uri, fingerprint)`` pairs that ``model`` finished (any run_date)."""
    return {(e.image_uri, e.fingerprint) for e in entries
            if e.model == model and e.outcome != "retry"}


def commit(output_uri: str) -> dict[str, int]:
    """Fold pending records into the index, removing rows they supersede.

    Returns:
        ``{"entries", "committed", "rows_removed"}``: index size, records folded, rows dropped.
    """
    current, superseded, records = _merged(output_uri)
    removed = sum(drop_images(output_uri, run_date, shard, uris)
                  for (run_date, shard), uris in sorted(superseded.items()))
    if records:
        rows = [dataclasses.asdict(entry) for _, entry in sorted(current.items())]
        table = pa.Table.from_pylist(rows, schema=_INDEX_SCHEMA)
        storage.write_bytes(index_uri(output_uri), parquet_bytes(table))
        for uri in records:  # only after the index holds them
            storage.remove(uri)
    return {"entries": len(current), "committed": len(records), "rows_removed": removed}


def _merged(output_uri: str) -> tuple[dict[tuple[str, str], Entry],
                                      dict[tuple[str, str], set[str]], list[str]]:
    """Index + pending records (oldest first): entries, rows to drop per old shard, records."""
    current = {(e.image_uri, e.run_date): e for e in _read_index(output_uri)}
    superseded: dict[tuple[str, str], set[str]] = {}
    records = _pending_records(output_uri)
    for _, entries in records:
        for entry in entries:
            key = (entry.image_uri, entry.run_date)
            previous = current.get(key)
            if previous is not None and previous.shard != entry.shard:
                superseded.setdefault((entry.run_date, previous.shard), set()).add(entry.image_uri)
            current[key] = entry
    # An image that moved back into a shard must keep its rows there.
    for (run_date, shard), uris in superseded.items():
        uris.difference_update(uri for uri in list(uris)
                               if current[(uri, run_date)].shard == shard)
    return current, {k: v for k, v in superseded.items() if v}, [uri for uri, _ in records]


def _read_index(output_uri: str) -> list[Entry]:
    uri = index_uri(output_uri)
    if not storage.exists(uri):
        return []
    return [Entry(**row) for row in read_file(uri).to_pylist()]


def _pending_records(output_uri: str) -> list[tuple[str, list[Entry]]]:
    folder = storage.join(output_uri, MANIFEST_FOLDER, "pending")
    records: list[tuple[float, str, list[Entry]]] = []
    for uri in storage.list_files(folder, suffixes=(".json",)):
        record: dict[str, Any] = json.loads(storage.read_bytes(uri))
        records.append((record["written_at"], uri, [Entry(**e) for e in record["entries"]]))
    return [(uri, entries) for _, uri, entries in sorted(records, key=lambda r: (r[0], r[1]))]
