"""A DuckDB database file of views over a local batch-inference output (``results --duckdb``).

The file holds no rows, only views that read the committed Parquet files when queried, so
``duckdb results.duckdb`` shows the tables as they are now, new run dates included:

- one view per table that has files under the output: ``area_ratios``, ``instances``,
  ``errors`` and, once the flows that write them have run, ``images`` and ``drift``; each reads
  ``<output>/<table>/*/*.parquet`` by absolute path with ``hive_partitioning = true`` (the
  ``run_date`` column) and ``union_by_name = true`` (files of older schema versions), keeping
  distinct rows, so a compaction running meanwhile doubles nothing;
- ``daily_class_summary``: per run_date and class, images, images with the class, instances,
  mean, median and 90th percentile area ratio.

Only local outputs: a DuckDB file cannot carry the s3fs filesystem that the Python API
registers per connection (``tasks.tables.queries``), and reading ``s3://`` from the DuckDB CLI
would need its ``httpfs`` extension downloaded, which this project avoids. Writing the file
again replaces these views (and drops those of tables that have gone); other objects in the
file are left alone. The file is written in DuckDB's 1.0 storage format, so any DuckDB 1.x or
later opens it.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import duckdb

from tasks import storage
from tasks.failures import InvalidInput, InvalidSetting, MissingInput
from tasks.parquet_schemas import SCHEMAS

# The committed tables, then the nightly report's drift table.
TABLES: tuple[str, ...] = (*SCHEMAS, "drift")
SUMMARY_VIEW = "daily_class_summary"
STORAGE_VERSION = "v1.0.0"

SUMMARY_SQL = """
SELECT run_date, class_name,
       count(DISTINCT image_uri) AS images,
       count(DISTINCT image_uri) FILTER (WHERE instance_count > 0) AS images_with_class,
       sum(instance_count) AS instances,
       avg(area_ratio) AS mean_area_ratio,
       quantile_cont(area_ratio, 0.5) AS p50_area_ratio,
       quantile_cont(area_ratio, 0.9) AS p90_area_ratio
FROM area_ratios
GROUP BY run_date, class_name
ORDER BY run_date, class_name
"""


@dataclasses.dataclass(frozen=True)
class ViewsWritten:
    """What :func:`write_views` left in the database file."""

    database: str
    output: str  # the absolute folder the views read
    views: tuple[str, ...]
    skipped: tuple[str, ...]  # tables without files under the output (no view)

    def describe(self) -> str:
        """Two lines for the command line: the views, and the tables skipped."""
        lines = [f"{self.database}: views {', '.join(self.views) or '-'} over {self.output}"]
        if self.skipped:
            lines.append(
                f"skipped {', '.join(self.skipped)}: no Parquet files under {self.output} yet"
            )
        return "\n".join(lines)


def write_views(output_uri: str, database: str) -> ViewsWritten:
    """Create or replace the views of ``output_uri``'s tables in the DuckDB file ``database``.

    Args:
        output_uri: a local batch-inference output folder (a path or ``file://`` URI).
        database: the DuckDB file; created when missing.

    Returns:
        The views written and the tables skipped.

    Raises:
        ValueError: ``output_uri`` is not local (``s3://``): copy it locally or use the
            Python API (``mrcnn_pipeline.results``, ``tasks.tables.queries``).
        FileNotFoundError: the output folder does not exist.
        OSError: the database file cannot be opened (e.g. another process holds its lock).
    """
    root = local_root(output_uri)
    present = tuple(table for table in TABLES if _has_files(root, table))
    views = [*present, *((SUMMARY_VIEW,) if "area_ratios" in present else ())]
    statements = [
        _view_sql(table, root) if table in present else f"DROP VIEW IF EXISTS {table}"
        for table in TABLES
    ]
    statements.append(
        f"CREATE OR REPLACE VIEW {SUMMARY_VIEW} AS {SUMMARY_SQL}"
        if "area_ratios" in present
        else f"DROP VIEW IF EXISTS {SUMMARY_VIEW}"
    )
    con = _connect(database)
    try:
        # One transaction: a re-run that fails half-way leaves the previous views.
        con.begin()
        for statement in statements:
            con.execute(statement)
        con.commit()
    finally:
        con.close()
    return ViewsWritten(
        database, root, tuple(views), tuple(table for table in TABLES if table not in present)
    )


def local_root(output_uri: str) -> str:
    """The absolute local path of ``output_uri``.

    Raises:
        ValueError: an object-store URI.
        FileNotFoundError: no folder there.
    """
    if not storage.is_local(output_uri):
        raise InvalidSetting(
            f"--duckdb needs a local output, not {output_uri!r}: a DuckDB file "
            "cannot carry the s3 filesystem; copy the output locally (e.g. aws s3 "
            "sync) or query it from Python (mrcnn_pipeline.results, "
            "tasks.tables.queries)"
        )
    path = os.path.abspath(storage.filesystem_for(output_uri)._strip_protocol(output_uri))
    if not os.path.isdir(path):
        raise MissingInput(f"output folder {output_uri!r} does not exist")
    return path


def table_glob(root: str, table: str) -> str:
    """``<root>/<table>/*/*.parquet``: the committed files (``_manifest`` is never matched)."""
    return os.path.join(root, table, "*", "*.parquet")


def _has_files(root: str, table: str) -> bool:
    # DuckDB cannot create a view over a glob that matches nothing: it binds the view now.
    return bool(glob.glob(table_glob(glob.escape(root), table)))


def _view_sql(table: str, root: str) -> str:
    # DISTINCT: while a compaction is applied, a listing can hold a small file beside the
    # compacted file that repeats its rows (tasks.tables.compaction); no two rows of a
    # committed table are equal otherwise (each has its key), so the views stay exact.
    path = table_glob(root, table).replace("'", "''")
    return (
        f"CREATE OR REPLACE VIEW {table} AS SELECT DISTINCT * FROM read_parquet('{path}', "
        "hive_partitioning = true, union_by_name = true)"
    )


def _connect(database: str) -> duckdb.DuckDBPyConnection:
    folder = os.path.dirname(os.path.abspath(database))
    os.makedirs(folder, exist_ok=True)
    try:
        return duckdb.connect(database, config={"storage_compatibility_version": STORAGE_VERSION})
    except duckdb.Error as error:  # a lock held by another process, not a DuckDB file, ...
        raise InvalidInput(f"cannot open DuckDB file {database!r}: {error}") from None
