"""The rows a report reads: the report day and the ``window_days`` before it, as frames.

``areas`` (``area_ratios``: run_date, image_uri, class_name, instance_count, area_ratio,
model_name, model_version), ``scores`` (``instances``: run_date, image_uri, class_name,
score), ``errors`` (run_date, image_uri, error_type) and, when the output has an ``images``
table, ``path_fields`` (run_date, image_uri and one column per path field). ``run_date`` is
an ISO date string throughout.
"""

from __future__ import annotations

import dataclasses
import datetime

import pandas as pd

from tasks.tables.queries import query

_RANGE = "run_date BETWEEN CAST($start AS DATE) AND CAST($day AS DATE)"
_AREAS = f"""SELECT CAST(run_date AS VARCHAR) AS run_date, image_uri, class_name, instance_count,
       area_ratio, model_name, model_version
FROM read_parquet($files, hive_partitioning = true) WHERE {_RANGE}"""
_SCORES = f"""SELECT CAST(run_date AS VARCHAR) AS run_date, image_uri, class_name, score
FROM read_parquet($files, hive_partitioning = true, union_by_name = true) WHERE {_RANGE}"""
_ERRORS = f"""SELECT CAST(run_date AS VARCHAR) AS run_date, image_uri, error_type
FROM read_parquet($files, hive_partitioning = true) WHERE {_RANGE}"""
_FIELDS = f"""SELECT CAST(run_date AS VARCHAR) AS run_date, image_uri,
       path_fields[$field] AS field
FROM read_parquet($files, hive_partitioning = true, union_by_name = true) WHERE {_RANGE}"""


@dataclasses.dataclass(frozen=True)
class History:
    """The window's rows (see the module docstring)."""

    day: str
    start: str
    areas: pd.DataFrame
    scores: pd.DataFrame
    errors: pd.DataFrame
    fields: pd.DataFrame | None = None

    @property
    def window(self) -> pd.DataFrame:
        """``areas`` of the days before the report day."""
        return self.areas[self.areas["run_date"] < self.day]

    @property
    def today(self) -> pd.DataFrame:
        """``areas`` of the report day."""
        return self.areas[self.areas["run_date"] == self.day]


def read_history(
    output_uri: str, day: datetime.date, window_days: int, path_field: str | None = None
) -> History:
    """Read the report day and the window before it.

    Raises:
        FileNotFoundError: the output has no ``area_ratios`` yet.
    """
    start = day - datetime.timedelta(days=window_days)
    bounds = {"start": start.isoformat(), "day": day.isoformat()}
    areas = _frame(output_uri, "area_ratios", _AREAS, bounds, required=True)
    scores = _frame(output_uri, "instances", _SCORES, bounds)
    errors = _frame(output_uri, "errors", _ERRORS, bounds)
    fields = (
        _frame(output_uri, "images", _FIELDS, {**bounds, "field": path_field})
        if path_field
        else None
    )
    return History(day.isoformat(), start.isoformat(), areas, scores, errors, fields)


def _frame(
    output_uri: str, table: str, sql: str, parameters: dict, required: bool = False
) -> pd.DataFrame:
    try:
        columns, rows = query(output_uri, table, sql, parameters)
    except FileNotFoundError:
        if required:
            raise
        return pd.DataFrame()
    return pd.DataFrame(rows, columns=columns)
