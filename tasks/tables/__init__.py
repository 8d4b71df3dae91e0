"""The batch-inference output tables and the protocol that keeps them exact.

Invariants (each has a test in ``tests/tasks/test_tables.py`` or
``tests/flows/test_batch_inference_faults.py``):

- **I1 one result per image**: after a crash at any step and a re-run, every
  ``(image_uri, run_date)`` has exactly one row per class in ``area_ratios`` (or one row in
  ``errors``), matching rows in ``instances``, and no file of the crash remains.
- **I2 concurrent runs**: two or three runs on one output and run_date leave no duplicates
  and miss nothing; a following run processes nothing.
- **I3 readers see committed files only**: table folders receive whole files by rename (or
  server-side copy) from ``_manifest``, which readers do not list.
- **I4 tables agree**: an image's rows enter all its tables in one commit.

Modules: ``keys`` (the names passed between them), ``layout`` (where files live), ``staging``
(a shard's files until commit), ``index`` (which image is in which file), ``lease`` (one
holder at a time), ``intents`` (every change written down, then applied: the protocol),
``plan`` (which files a commit moves, rewrites and removes), ``commit`` (staged shards into
the tables), ``cleanup`` (garbage of crashed runs), ``compaction`` (a month's small files
rewritten as few large ones), ``migration`` (the one-off adoption of a first-layout output).
"""

from tasks.tables.commit import CommitResult, commit
from tasks.tables.index import Entry, done_images, read_current
from tasks.tables.staging import pending_entries, stage

__all__ = [
    "CommitResult",
    "Entry",
    "commit",
    "done_images",
    "pending_entries",
    "read_current",
    "stage",
]
