"""The rows the strategies read, as pandas frames, from the committed tables.

``current`` holds the ``area_ratios`` rows of each image's newest run in ``[since, until]``,
``history`` those of the ``window_days`` before ``since``, ``results`` every area row in the
range (all model versions, for ``disagreement``), ``instances`` the detections of the newest
runs.
"""

from __future__ import annotations

import dataclasses
import datetime

import pandas as pd

from tasks.tables.queries import query

_AREAS_SQL = """
SELECT image_uri, CAST(run_date AS VARCHAR) AS run_date, class_name, area_ratio, model_version
FROM read_parquet($files, hive_partitioning = true)
WHERE run_date >= CAST($start AS DATE) AND ($until IS NULL OR run_date <= CAST($until AS DATE))
"""

_INSTANCES_SQL = """
SELECT image_uri, CAST(run_date AS VARCHAR) AS run_date, class_name, score, y1, x1, y2, x2
FROM read_parquet($files, hive_partitioning = true, union_by_name = true)
WHERE run_date >= CAST($since AS DATE) AND ($until IS NULL OR run_date <= CAST($until AS DATE))
"""


@dataclasses.dataclass(frozen=True)
class ReviewInputs:
    """The frames the strategies read (see the module docstring)."""

    current: pd.DataFrame
    history: pd.DataFrame
    results: pd.DataFrame
    instances: pd.DataFrame

    @property
    def image_uris(self) -> list[str]:
        """The images a selection chooses from, sorted."""
        return sorted(self.current["image_uri"].unique())


def read_inputs(
    output_uri: str, since: datetime.date, until: datetime.date | None, window_days: int
) -> ReviewInputs:
    """Read the frames for a selection over ``[since, until]``.

    Raises:
        FileNotFoundError: no committed ``area_ratios`` under ``output_uri``.
    """
    start = since - datetime.timedelta(days=window_days)
    bounds = {"until": until.isoformat() if until else None}
    areas = _frame(
        *query(output_uri, "area_ratios", _AREAS_SQL, {**bounds, "start": start.isoformat()})
    )
    history = areas[areas["run_date"] < since.isoformat()]
    results = areas[areas["run_date"] >= since.isoformat()]
    newest = results.groupby("image_uri")["run_date"].transform("max")
    current = results[results["run_date"] == newest]
    try:
        instances = _frame(
            *query(output_uri, "instances", _INSTANCES_SQL, {**bounds, "since": since.isoformat()})
        )
    except FileNotFoundError:
        instances = pd.DataFrame(
            columns=["image_uri", "run_date", "class_name", "score", "y1", "x1", "y2", "x2"]
        )
    latest = current[["image_uri", "run_date"]].drop_duplicates()
    instances = instances.merge(latest, on=["image_uri", "run_date"])
    return ReviewInputs(
        current.reset_index(drop=True),
        history.reset_index(drop=True),
        results.reset_index(drop=True),
        instances,
    )


def _frame(columns: list[str], rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)
