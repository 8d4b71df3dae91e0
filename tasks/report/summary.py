"""Daily numbers of the report, and drift of the report day against the window."""

from __future__ import annotations

import pandas as pd

from tasks.report.drift import DriftRow, DriftSettings, RateJump, class_drift, rate_jump
from tasks.report.history import History


def daily_overall(history: History) -> pd.DataFrame:
    """Per run_date: images, errors, error_rate, no_detection_rate, mean_score, models."""
    areas = history.areas
    per_image = areas.groupby(["run_date", "image_uri"])["instance_count"].sum().reset_index()
    days = per_image.groupby("run_date").agg(
        images=("image_uri", "nunique"),
        no_detection=("instance_count", lambda counts: int((counts == 0).sum())),
    )
    errors = (
        history.errors.groupby("run_date")["image_uri"].nunique()
        if len(history.errors)
        else pd.Series(dtype=int)
    )
    days["errors"] = errors.reindex(days.index, fill_value=0).astype(int)
    days["error_rate"] = days["errors"] / (days["images"] + days["errors"])
    days["no_detection_rate"] = days["no_detection"] / days["images"]
    scores = (
        history.scores.groupby("run_date")["score"].mean()
        if len(history.scores)
        else pd.Series(dtype=float)
    )
    days["mean_score"] = scores.reindex(days.index)
    days["models"] = areas.groupby("run_date")["model_version"].agg(
        lambda versions: ",".join(sorted(set(map(str, versions))))
    )
    return days.sort_index()


def daily_class(history: History) -> pd.DataFrame:
    """Per run_date and class: images, instances, mean, p50 and p90 area ratio."""
    grouped = history.areas.groupby(["run_date", "class_name"])
    table = grouped.agg(
        images=("image_uri", "nunique"),
        instances=("instance_count", "sum"),
        mean=("area_ratio", "mean"),
    )
    table["p50"] = grouped["area_ratio"].quantile(0.5)
    table["p90"] = grouped["area_ratio"].quantile(0.9)
    return table.reset_index()


def version_changes(overall: pd.DataFrame) -> list[str]:
    """Days whose set of model versions differs from the day before."""
    models = overall["models"].tolist()
    return [day for day, before, now in zip(overall.index[1:], models, models[1:]) if before != now]


def drift_rows(history: History, settings: DriftSettings) -> list[DriftRow]:
    """``psi`` and ``ks`` rows per class of the report day."""
    today, window = history.today, history.window
    rows = []
    for name in sorted(history.areas["class_name"].unique()):
        rows += class_drift(
            name,
            today.loc[today["class_name"] == name, "area_ratio"],
            window.loc[window["class_name"] == name, "area_ratio"],
            settings,
        )
    return rows


def rate_jumps(overall: pd.DataFrame, day: str, settings: DriftSettings) -> list[RateJump]:
    """Error and no-detection rates of the report day far above the window's."""
    if day not in overall.index:
        return []
    before = overall[overall.index < day]
    found = [
        rate_jump(rate, float(overall.loc[day, rate]), before[rate].dropna().tolist(), settings)
        for rate in ("error_rate", "no_detection_rate")
    ]
    return [jump for jump in found if jump is not None]
