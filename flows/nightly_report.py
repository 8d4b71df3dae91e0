"""Flow ``nightly-report``: the night's numbers against the last weeks, as one HTML page.

read the report day and its window -> daily numbers and drift -> ``drift`` table -> charts,
gallery, the day's models' registered evaluation -> ``<output>/reports/run_date=D/index.html``
-> a markdown artifact with the key numbers and the page's URI, and the event
``mrcnn.drift.detected`` when a class drifts or the error or no-detection rate jumps (a Prefect
automation can notify on it).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from tasks.report import build, summary
from tasks.report.accuracy import report_day_models
from tasks.report.drift import DriftRow, DriftSettings, RateJump
from tasks.report.gallery import choose
from tasks.report.page import ReportPage, render
from tasks.report.writing import (
    draw_gallery,
    load_history,
    read_model_accuracy,
    write_drift,
    write_page,
)

EVENT = "mrcnn.drift.detected"


@dataclasses.dataclass(frozen=True)
class ReportSummary:
    """What one nightly report wrote and found."""

    report: str  # the page's URI
    drift: str  # the drift table's file of the day
    drifting: tuple[str, ...]  # classes whose drift statistics both flag them
    jumps: tuple[RateJump, ...]  # daily rates well above their window
    images: int  # images of the report day

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (``--json``)."""
        return dataclasses.asdict(self)


@flow(name="nightly-report")
def nightly_report(
    output: str,
    date: datetime.date | None = None,
    window: int = 28,
    path_field: str | None = None,
    gallery: int = 12,
    psi: float = 0.2,
    ks_alpha: float = 0.01,
    min_images: int = 20,
    registry: str | None = None,
) -> ReportSummary:
    """Write the report of one run_date of batch inference's results.

    Args:
        output: batch inference's output folder (local or s3://).
        date: the run_date to report (default: today, UTC).
        window: days before ``date`` the report compares with.
        path_field: a field of the ``images`` table's ``path_fields`` (e.g. ``site``) to
            break the numbers down by.
        gallery: how many images the gallery shows.
        psi, ks_alpha, min_images: drift thresholds (see ``tasks.report.drift``).
        registry: the model registry; the page then shows how each model version of the
            report day scored on its val split (its registered ``metrics.json``).

    Returns:
        The page's and the drift file's URIs, the drifting classes, the rate jumps and the
        report day's image count.
    """
    day = date or datetime.datetime.now(datetime.timezone.utc).date()
    settings = DriftSettings(window, psi, ks_alpha, min_images)
    history = load_history(output, day, window, path_field)
    overall = summary.daily_overall(history)
    changes = summary.version_changes(overall)
    drift = summary.drift_rows(history, settings)
    jumps = summary.rate_jumps(overall, history.day, settings)
    drift_uri = write_drift(output, history.day, drift)
    daily = summary.daily_class(history)
    classes = tuple(
        build.class_section(
            name, daily, history, changes, [row for row in drift if row.class_name == name]
        )
        for name in sorted(daily["class_name"].unique())
    )
    errors = (
        history.errors[history.errors["run_date"] == history.day]
        if len(history.errors)
        else history.errors
    )
    page = ReportPage(
        history.day,
        output,
        build.key_numbers(overall, history.day),
        build.overall_charts(overall, history.day, changes),
        classes,
        tuple(jumps),
        errors["error_type"].value_counts().to_dict() if len(errors) else {},
        tuple(draw_gallery(output, history.day, choose(history, gallery, window))),
        build.breakdown(history),
        path_field,
        tuple(read_model_accuracy(registry, report_day_models(history))),
    )
    uri = write_page(output, history.day, render(page))
    drifting = sorted({row.class_name for row in drift if row.drifting})
    _announce(output, history.day, uri, page, drift, drifting, jumps)
    get_run_logger().info(
        "report of %s: %s (drifting: %s)", history.day, uri, ", ".join(drifting) or "none"
    )
    images = int(overall.loc[history.day, "images"]) if history.day in overall.index else 0
    return ReportSummary(uri, drift_uri, tuple(drifting), tuple(jumps), images)


def _announce(
    output: str,
    day: str,
    uri: str,
    page: ReportPage,
    drift: list[DriftRow],
    drifting: list[str],
    jumps: list[RateJump],
) -> None:
    """The markdown artifact, and the event when something moved."""
    lines = [f"# Nightly report {day}", "", f"[{uri}]({uri})", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in page.key_numbers.items()]
    lines += [f"| drifting classes | {', '.join(drifting) or 'none'} |"]
    create_markdown_artifact(
        "\n".join(lines), key="nightly-report", description=f"nightly report {day}"
    )
    if not drifting and not jumps:
        return
    emit_event(
        EVENT,
        resource={
            "prefect.resource.id": f"mrcnn.results.{output}",
            "prefect.resource.name": output,
        },
        payload={
            "run_date": day,
            "report": uri,
            "classes": drifting,
            "statistics": [dataclasses.asdict(row) for row in drift if row.class_name in drifting],
            "jumps": [dataclasses.asdict(jump) for jump in jumps],
        },
    )
