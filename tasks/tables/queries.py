"""DuckDB over the committed batch-inference tables, local or on an object store.

Local folders are read directly; ``s3://`` goes through the project's s3fs filesystem
(``con.register_filesystem``), so no DuckDB extension has to be downloaded. Queries read
``$files``, the glob of one table's committed files (``_manifest`` is never matched).
"""

from __future__ import annotations

from typing import Any

import duckdb

from tasks import storage
from tasks.failures import MissingInput


def connect(output_uri: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can read ``output_uri`` (local or s3://)."""
    con = duckdb.connect()
    if not storage.is_local(output_uri):
        con.register_filesystem(storage.filesystem_for(output_uri))
    return con


def table_glob(output_uri: str, table: str) -> str:
    """The files of one table: ``<output_uri>/<table>/*/*.parquet``."""
    root = (
        output_uri
        if not storage.is_local(output_uri)
        else storage.filesystem_for(output_uri)._strip_protocol(output_uri)
    )
    return storage.join(root, table, "*", "*.parquet")


def query(
    output_uri: str, table: str, sql: str, parameters: dict[str, Any] | None = None
) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` (which reads ``$files``) over one table; returns ``(columns, rows)``.

    Raises:
        FileNotFoundError: the table has no Parquet files under ``output_uri``.
    """
    con = connect(output_uri)
    try:
        cursor = con.execute(sql, {"files": table_glob(output_uri, table), **(parameters or {})})
        return [d[0] for d in cursor.description], cursor.fetchall()
    except duckdb.IOException as error:
        if "No files found" in str(error):
            raise MissingInput(
                f"no {table} Parquet files under {output_uri!r} "
                "(has batch-inference written there yet?)"
            ) from None
        raise
    finally:
        con.close()
