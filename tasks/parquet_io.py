"""Parquet files as bytes: one table in, one file out, on any storage.

Files are serialised in memory and stored with ``tasks.storage.write_bytes`` (temporary name
+ rename on disk, a single PUT on object stores), so nobody sees half a file.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from tasks import storage


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as the bytes of one Parquet file."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def read_file(uri: str) -> pa.Table:
    """One Parquet file (any storage) as a table."""
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))
