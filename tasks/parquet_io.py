"""Write and rewrite one shard's Parquet files in the hive-partitioned output tables.

A shard's file has the same name in each table, derived from the shard's content
(``part-<shard_key>.parquet``), so a retried or re-run shard replaces its own file instead of
adding another. Files are serialised in memory and stored with ``tasks.storage.write_bytes``
(temporary name + rename on disk, a single PUT on object stores): readers never see half a
file. A table a shard has no rows for gets no file (and loses a stale one from an earlier try).
"""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks import storage
from tasks.parquet_schemas import PARTITION_KEY, SCHEMAS


def table_file(output_uri: str, table: str, run_date: str, shard_key: str) -> str:
    """URI of a shard's file: ``<output_uri>/<table>/run_date=<date>/part-<shard_key>.parquet``."""
    if table not in SCHEMAS:
        raise KeyError(f"unknown table {table!r}; expected one of {sorted(SCHEMAS)}")
    return storage.join(output_uri, table, f"{PARTITION_KEY}={run_date}",
                        f"part-{shard_key}.parquet")


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as the bytes of one Parquet file."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def read_file(uri: str) -> pa.Table:
    """One Parquet file (any storage) as a table."""
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))


def write_shard(output_uri: str, run_date: str, shard_key: str,
                tables: Mapping[str, pa.Table]) -> dict[str, str]:
    """Store a shard's rows, one file per table, replacing what an earlier try wrote.

    Args:
        output_uri: root of the output tables.
        run_date: partition, ``YYYY-MM-DD``.
        shard_key: deterministic name of the shard (see ``tasks.inference.shard_key``).
        tables: ``{table name: rows}`` with each table's schema; a missing name means no rows.

    Returns:
        ``{table name: URI}`` of the files written.
    """
    unknown = sorted(set(tables) - set(SCHEMAS))
    if unknown:
        raise KeyError(f"unknown tables {unknown}; expected some of {sorted(SCHEMAS)}")
    written = {}
    for name, schema in SCHEMAS.items():
        uri = table_file(output_uri, name, run_date, shard_key)
        table = tables.get(name)
        if table is not None and table.num_rows:
            if not table.schema.equals(schema):
                raise ValueError(f"{name} table does not have the {name} schema:\n{table.schema}")
            written[name] = storage.write_bytes(uri, parquet_bytes(table))
        else:
            storage.remove(uri)
    return written


def drop_images(output_uri: str, run_date: str, shard_key: str,
                image_uris: Collection[str]) -> int:
    """Remove the rows of some images from a shard's files (they were processed again).

    A file left without rows is deleted; a file without any of these images is not touched.

    Returns:
        The number of rows removed, over all tables.
    """
    drop = pa.array(sorted(set(image_uris)), pa.string())
    removed = 0
    for name in SCHEMAS:
        uri = table_file(output_uri, name, run_date, shard_key)
        if not storage.exists(uri):
            continue
        table = read_file(uri)
        kept = table.filter(pc.invert(pc.is_in(table["image_uri"], value_set=drop)))
        if kept.num_rows == table.num_rows:
            continue
        removed += table.num_rows - kept.num_rows
        if kept.num_rows:
            storage.write_bytes(uri, parquet_bytes(kept))
        else:
            storage.remove(uri)
    return removed
