"""Garbage of crashed runs: what it is and when it may go.

Run by the committer while it holds the lease, after every intent is applied:

- **prepared files without an intent** (``_manifest/commits/<gen>/`` of a committer that died
  before its commit point): at once, since only a lease holder writes them;
- **table files no index entry refers to** in the partitions the commit touched (left by
  outputs written before the commit protocol): at once, for the same reason;
- **unfinished staging folders** (no ``record.json``) and **temporary files** of killed writes
  (``.<name>.<hex>.tmp``, probe objects): only once older than the stale threshold
  (``MRCNN_STALE_SECONDS``, default one hour), so a live concurrent run keeps its own.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable

from tasks import storage
from tasks.failures import InvalidSetting
from tasks.parquet_schemas import PARTITION_KEY, SCHEMAS
from tasks.tables import index, staging
from tasks.tables.keys import RunDate, StemKey
from tasks.tables.layout import generation_of, manifest, partition, stem_of

DEFAULT_STALE_SECONDS = 3600.0
OVERLAYS = "overlays"


def stale_after(seconds: float | None = None) -> float:
    """``seconds``, else ``MRCNN_STALE_SECONDS``, else one hour."""
    if seconds is None:
        text = os.environ.get("MRCNN_STALE_SECONDS")
        seconds = float(text) if text else DEFAULT_STALE_SECONDS
    if seconds < 0:
        raise InvalidSetting(f"the stale threshold must not be negative, got {seconds}")
    return seconds


def drop_unclaimed_scratch(output_uri: str) -> int:
    """Remove prepared files of commits that never wrote their intent; returns how many."""
    folder = manifest(output_uri, "commits")
    files = storage.list_files(folder)
    intents = {generation_of(uri) for uri in files if uri.endswith(".json")}
    scratch = {posixpath.dirname(uri) for uri in files if not uri.endswith(".json")}
    unclaimed = [
        path
        for path in scratch
        if generation_of(path) is not None and generation_of(path) not in intents
    ]
    for path in unclaimed:
        storage.remove(path)
    return len(unclaimed)


def collect(
    output_uri: str, run_dates: Iterable[RunDate], stale_seconds: float | None = None
) -> int:
    """Remove the garbage described above; returns the number of files and folders removed."""
    stale = stale_after(stale_seconds)
    dates = sorted(set(run_dates))
    removed = _unfinished_staging(output_uri, stale)
    # Only where this commit wrote, so the cost follows the run, not the history.
    places = [manifest(output_uri, "commits"), manifest(output_uri, "leases")]
    places += [manifest(output_uri, "index", f"{PARTITION_KEY}={day}") for day in dates]
    places += [partition(output_uri, table, day) for table in (*SCHEMAS, OVERLAYS) for day in dates]
    for place in places:
        removed += _temporaries(storage.list_ages(place), stale)
    for shallow in (output_uri, manifest(output_uri)):  # the CSV summary, probe objects
        removed += _temporaries(storage.list_ages(shallow, depth=1), stale)
    return removed + _unreferenced(output_uri, dates)


def is_temporary(uri: str) -> bool:
    """A killed write's leftover: ``.<name>.<hex>.tmp`` or a ``_manifest/probe-*`` object."""
    name = posixpath.basename(uri)
    return (name.startswith(".") and name.endswith(".tmp")) or name.startswith("probe-")


def _unfinished_staging(output_uri: str, stale: float) -> int:
    removed = 0
    for folder, files in staging.folders(output_uri).items():
        finished = storage.join(folder, staging.RECORD) in files
        if not finished and min(files.values()) >= stale:
            storage.remove(folder)
            removed += 1
    return removed


def _temporaries(ages: dict[str, float], stale: float) -> int:
    garbage = [uri for uri, age in ages.items() if is_temporary(uri) and age >= stale]
    for uri in garbage:
        storage.remove(uri)
    return len(garbage)


def _unreferenced(output_uri: str, dates: list[RunDate]) -> int:
    if not dates:
        return 0
    current = index.read_current(output_uri, dates)
    referenced = {
        StemKey(*key) for key in zip(current["run_date"].to_pylist(), current["file"].to_pylist())
    }
    removed = 0
    for table in SCHEMAS:
        for day in dates:
            for uri in storage.list_files(partition(output_uri, table, day), (".parquet",)):
                if StemKey(day, stem_of(uri)) not in referenced:
                    storage.remove(uri)
                    removed += 1
    return removed
