"""Where every file of a batch-inference output lives.

::

    <output>/<table>/run_date=D/part-<stem>.parquet    committed table files (what readers see)
    <output>/overlays/run_date=D/<relative path>.jpg   overlay pictures (not a table)
    <output>/_manifest/staging/<run_id>/<shard>/       a shard's files until a commit takes them
    <output>/_manifest/index/run_date=D/<gen>.parquet  which image is in which committed file
    <output>/_manifest/leases/<gen>.json               the commit lease, one file per holder
    <output>/_manifest/commits/<gen>.json              a commit's intent, until it is applied
    <output>/_manifest/commits/<gen>/                  files a commit prepared (rewrites, index)
    <output>/_manifest/layout.json                     the record of the first layout's migration

Readers never look below ``_manifest``: its name starts with ``_``, which pyarrow datasets
skip, and the table globs (``area_ratios/*/*.parquet``) do not reach it.
"""

from __future__ import annotations

import posixpath

from tasks import storage
from tasks.parquet_schemas import PARTITION_KEY, SCHEMAS
from tasks.tables.keys import Generation, RunDate, RunId, ShardName, Stem

MANIFEST = "_manifest"
GENERATION_DIGITS = 12


def table_file(output_uri: str, table: str, run_date: RunDate, stem: Stem) -> str:
    """``<output>/<table>/run_date=<date>/part-<stem>.parquet``."""
    if table not in SCHEMAS:
        raise KeyError(f"unknown table {table!r}; expected one of {sorted(SCHEMAS)}")
    return storage.join(output_uri, table, f"{PARTITION_KEY}={run_date}", f"part-{stem}.parquet")


def stem_of(uri: str) -> Stem:
    """The stem of a table file's URI (``.../part-<stem>.parquet``)."""
    return Stem(posixpath.basename(uri).removeprefix("part-").removesuffix(".parquet"))


def partition(output_uri: str, table: str, run_date: RunDate) -> str:
    """``<output>/<table>/run_date=<date>`` (also for ``overlays``)."""
    return storage.join(output_uri, table, f"{PARTITION_KEY}={run_date}")


def manifest(output_uri: str, *parts: str) -> str:
    """A path below ``<output>/_manifest``."""
    return storage.join(output_uri, MANIFEST, *parts)


def generation_name(generation: Generation) -> str:
    """Zero-padded, so names sort by generation."""
    return f"{generation:0{GENERATION_DIGITS}d}"


def stem_name(generation: Generation, number: int, compacted: bool = False) -> Stem:
    """``<generation>-<n>``, or ``<generation>-c<n>`` for compaction: never used twice."""
    return Stem(f"{generation_name(generation)}-{'c' if compacted else ''}{number:05d}")


def staging_folder(output_uri: str, run_id: RunId, shard: ShardName) -> str:
    return manifest(output_uri, "staging", run_id, shard)


def index_file(output_uri: str, run_date: RunDate, generation: Generation) -> str:
    return manifest(
        output_uri, "index", f"{PARTITION_KEY}={run_date}", f"{generation_name(generation)}.parquet"
    )


def lease_file(output_uri: str, generation: Generation) -> str:
    return manifest(output_uri, "leases", f"{generation_name(generation)}.json")


def intent_file(output_uri: str, generation: Generation) -> str:
    return manifest(output_uri, "commits", f"{generation_name(generation)}.json")


def scratch_folder(output_uri: str, generation: Generation) -> str:
    return manifest(output_uri, "commits", generation_name(generation))


def layout_record(output_uri: str) -> str:
    """``_manifest/layout.json``: present once the output is in this layout (``migration``)."""
    return manifest(output_uri, "layout.json")


def generation_of(uri: str) -> Generation | None:
    """The generation in a lease, intent or index file name; None for other names."""
    stem = uri.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    return Generation(int(stem)) if stem.isdigit() and len(stem) == GENERATION_DIGITS else None
