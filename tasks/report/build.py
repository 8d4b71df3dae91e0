"""From the window's rows to the page: key numbers, one section per class, the breakdown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tasks.report import charts
from tasks.report.drift import AREA_EDGES, DriftRow, area_bins
from tasks.report.history import History
from tasks.report.page import ClassSection

BIN_LABELS = ("0", *[f"≤{100 * edge:g}%" for edge in AREA_EDGES], ">50%")


def key_numbers(overall: pd.DataFrame, day: str) -> dict[str, str]:
    """The numbers a reader checks first, for the report day."""
    if day not in overall.index:
        return {"images processed": "0 (no run on this day)"}
    row = overall.loc[day]
    return {
        "images processed": f"{int(row['images'])}",
        "images failed": f"{int(row['errors'])} ({100 * row['error_rate']:.1f} %)",
        "images with no detection": f"{100 * row['no_detection_rate']:.1f} %",
        "mean detection score": "-" if pd.isna(row["mean_score"]) else f"{row['mean_score']:.3f}",
        "model versions": str(row["models"]),
    }


def overall_charts(overall: pd.DataFrame, day: str, changes: Sequence[str]) -> tuple[str, ...]:
    """Images and failures per day; no-detection share and mean score per day."""
    days = list(overall.index)
    return (
        charts.daily_lines(
            days,
            {"images": overall["images"].tolist(), "failed": overall["errors"].tolist()},
            day,
            changes,
            "images per day",
        ),
        charts.daily_lines(
            days,
            {
                "no detection": overall["no_detection_rate"].tolist(),
                "mean score": overall["mean_score"].fillna(0).tolist(),
            },
            day,
            changes,
            "empty results and mean score",
            percent=True,
        ),
    )


def class_section(
    name: str,
    daily: pd.DataFrame,
    history: History,
    changes: Sequence[str],
    drift: Sequence[DriftRow],
) -> ClassSection:
    """Trend (mean, p50, p90 per day), today's distribution against the window's, counts."""
    rows = daily[daily["class_name"] == name].set_index("run_date").sort_index()
    days = list(rows.index)
    trend = charts.daily_lines(
        days,
        {k: rows[k].tolist() for k in ("mean", "p50", "p90")},
        history.day,
        changes,
        f"{name}: share of the image",
        percent=True,
    )
    today = history.today.loc[history.today["class_name"] == name, "area_ratio"]
    window = history.window.loc[history.window["class_name"] == name, "area_ratio"]
    distribution = charts.distributions(
        BIN_LABELS,
        area_bins(today.to_numpy()),
        area_bins(window.to_numpy()),
        f"{name}: images per area bin",
    )
    counts = charts.daily_lines(
        days,
        {"instances": rows["instances"].tolist()},
        history.day,
        changes,
        f"{name}: instances per day",
    )
    return ClassSection(name, trend, distribution, counts, tuple(drift))


def breakdown(history: History) -> pd.DataFrame | None:
    """Mean area ratio per class and path-field value: the report day beside the window."""
    if history.fields is None or not len(history.fields):
        return None
    joined = history.areas.merge(history.fields, on=["run_date", "image_uri"])
    joined["when"] = np.where(joined["run_date"] == history.day, "report day", "window")
    table = joined.pivot_table(
        index=["field", "class_name"], columns="when", values="area_ratio", aggfunc="mean"
    )
    return table.reset_index().rename(columns={"field": "value", "class_name": "class"})
