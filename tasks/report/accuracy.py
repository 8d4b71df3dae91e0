"""The report's "model accuracy" section: how the models of the report day scored on the val
split they were registered with.

The tables record each result's ``model_name`` and ``model_version``; a registry version's
number leads to ``<registry>/<name>/versions/<N>/metrics.json`` (``evaluate-model``'s, stored
at registration). A model outside the registry (version ``sha256-…``) has no registered
evaluation, and without a registry none is looked up; the section then says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tasks import storage
from tasks.accuracy_table import AccuracyRow, accuracy_rows, limit_warning, summary_line
from tasks.report.history import History

METRICS_FILE = "metrics.json"  # beside a registry version's weights


@dataclasses.dataclass(frozen=True)
class ModelAccuracy:
    """What the section shows of one model version: its numbers, or why there are none.

    Attributes:
        identity: ``name@version``, as the tables record it.
        summary: the AP line (`tasks.accuracy_table.summary_line`).
        rows: the per-class table.
        warning: the evaluation's detection-limit warning, if any.
        missing: why no numbers are shown (no registry, no registry version, no file).
    """

    identity: str
    summary: str | None = None
    rows: tuple[AccuracyRow, ...] = ()
    warning: str | None = None
    missing: str | None = None


def report_day_models(history: History) -> list[tuple[str, str]]:
    """``(model_name, model_version)`` of the report day's results, in name and version order."""
    today = history.today
    if not len(today):
        return []
    pairs = today[["model_name", "model_version"]].drop_duplicates()
    return sorted(pairs.itertuples(index=False, name=None))


def registered_metrics_uri(registry: str, name: str, version: str) -> str | None:
    """The version's ``metrics.json``, or None when ``version`` is no registry number."""
    if not version.isdigit():
        return None
    return storage.join(registry, name, "versions", version, METRICS_FILE)


def model_accuracy(identity: str, metrics: Mapping[str, Any]) -> ModelAccuracy:
    """The section's numbers of one version's ``metrics.json``."""
    return ModelAccuracy(
        identity, summary_line(metrics), tuple(accuracy_rows(metrics)), limit_warning(metrics)
    )


def unavailable(identity: str, reason: str) -> ModelAccuracy:
    """A version whose evaluation cannot be shown, and why."""
    return ModelAccuracy(identity, missing=reason)
