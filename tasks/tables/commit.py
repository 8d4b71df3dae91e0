"""The commit: staged shards become table files, superseded rows go, the index follows.

One run of the intent protocol (``tasks.tables.intents``) under the lease, generation ``g``:

1. **Recover**: finish every intent a crashed holder left, drop prepared files without one.
2. **Prepare** (``tasks.tables.plan``): read the complete staged shards (oldest record first:
   a later one wins an image) and the current index of their run_dates; decide, per image and
   run_date, the one place its rows will live. Staged files that keep all their images are
   moved as they are; staged or committed files that lose images are rewritten without them
   into ``_manifest/commits/<g>/``; the new index entries go there too.
3. **Commit point**: the intent ``_manifest/commits/<g>.json`` (moves, removals, folders to
   clean). Before it nothing is visible; after it the next holder finishes it.
4. **Apply**: moves (table files, then index files), then removals, then the consumed staging
   folders, the scratch folder and the intent itself. Every step can be done twice.
5. **Collect garbage** (``tasks.tables.cleanup``) and release the lease.

Committed file names (``part-<gen>-<n>``) are never reused, so applying an intent twice, or
concurrently with a committer that took over an expired lease, moves and removes the same
files to the same end. Before its first step a commit makes sure the output is in this
layout (``tasks.tables.migration``: one existence check once it is).
"""

from __future__ import annotations

import dataclasses

from tasks.tables import intents, migration
from tasks.tables.keys import Generation
from tasks.tables.plan import CommitPlan


@dataclasses.dataclass(frozen=True)
class CommitResult:
    generation: Generation
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

    Raises:
        lease.LeaseTimeout: a live holder kept the lease for too long (transient).
    """
    migrated = migration.ensure(output_uri, stale_seconds)
    plan = CommitPlan(output_uri)
    run = intents.run(output_uri, plan.prepare, stale_seconds)
    finished = run.finished + (migrated.finished if migrated is not None else 0)
    return CommitResult(
        run.generation, finished, plan.shards, plan.entry_count, plan.rows_removed, run.garbage
    )
