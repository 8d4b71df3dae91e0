"""The names that pass between the table modules, each with its own type.

At run time they are plain ints, strings and tuples (``NewType``; ``NamedTuple`` for the
compound keys, so they stay dict keys equal to plain tuples); in a signature they say which
string a function wants: a partition's date, a committed file's stem, a lease's number.
"""

from __future__ import annotations

from typing import NamedTuple, NewType

Generation = NewType("Generation", int)
"""A lease's number: it orders commits and names their files (``layout.generation_name``)."""

RunDate = NewType("RunDate", str)
"""An ISO date ``YYYY-MM-DD``: one partition (``run_date=<date>``) of every table."""

Stem = NewType("Stem", str)
"""The name one committed shard's files share: ``<table>/run_date=D/part-<stem>.parquet``."""

RunId = NewType("RunId", str)
"""A batch-inference run; its shards stage their files below ``_manifest/staging/<run_id>``."""

ShardName = NewType("ShardName", str)
"""A shard's staging folder name within its run."""


class ImageKey(NamedTuple):
    """One image in one partition: what has exactly one result (invariant I1)."""

    image_uri: str
    run_date: RunDate


class StemKey(NamedTuple):
    """One committed stem in one partition: the files that hold some images' rows."""

    run_date: RunDate
    stem: Stem
