"""What people read of an evaluation's ``metrics.json``: one summary line and a per-class table
of coverage accuracy beside the baselines, as text cells.

Shared by the registry's ``MODEL_CARD.md`` and the nightly report, so both show the same
numbers the same way. Metrics written before a key existed show ``n/a`` in its cell. Plain
data only (no Prefect, no storage): the registry imports it and stays metadata-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass
from typing import Any

HEADER = (
    "class",
    "segm AP",
    "coverage MAE pp [95 % CI]",
    "bias pp",
    "count error (median relative)",
    "nothing: MAE pp [95 % CI]",
    "Otsu: MAE pp [95 % CI]",
    "model vs nothing / Otsu",
)


@dataclass(frozen=True)
class AccuracyRow:
    """One class's cells, in `HEADER` order."""

    class_name: str
    segm_ap: str
    coverage_mae: str
    bias: str
    count_error: str
    nothing_mae: str
    otsu_mae: str
    verdicts: str

    def cells(self) -> tuple[str, ...]:
        return astuple(self)


def accuracy_rows(
    metrics: Mapping[str, Any], classes: Sequence[str] | None = None
) -> list[AccuracyRow]:
    """One row per class (default: the classes of ``area_ratio_error``, else of segm AP)."""
    per_class_ap = _get(metrics, "segm", "per_class") or {}
    area = _get(metrics, "area_ratio_error", "per_class") or {}
    rows = []
    for name in classes if classes is not None else list(area or per_class_ap):
        stats = area.get(name) or {}
        nothing = _get(stats, "baselines", "nothing") or {}
        otsu = _get(stats, "baselines", "otsu") or {}
        rows.append(
            AccuracyRow(
                name,
                _number(per_class_ap.get(name), 4),
                _mae(stats),
                _signed(stats.get("bias_pp")),
                _number(_get(stats, "count_error", "median_relative"), 2),
                _mae(nothing),
                _mae(otsu) if otsu.get("applicable", True) else "not applicable",
                f"{_verdict(nothing)} / {_verdict(otsu)}",
            )
        )
    return rows


def summary_line(metrics: Mapping[str, Any]) -> str:
    """AP figures, the image count and COCO's maxDets, e.g. for the top of a table."""
    max_dets = metrics.get("coco_max_dets")
    return (
        f"segm AP {_number(_get(metrics, 'segm', 'AP'), 4)}, "
        f"AP50 {_number(_get(metrics, 'segm', 'AP50'), 4)}; "
        f"bbox AP {_number(_get(metrics, 'bbox', 'AP'), 4)}; "
        f"matterport mAP50 {_number(metrics.get('mAP50'), 4)}; "
        f"{metrics.get('images', 'n/a')} images"
        + (f"; COCO maxDets {max_dets[-1]}" if max_dets else "")
    )


def limit_warning(metrics: Mapping[str, Any]) -> str | None:
    """The warning of an evaluation whose DETECTION_MAX_INSTANCES capped recall, else None."""
    limit = metrics.get("detection_limit") or {}
    if not limit.get("capped"):
        return None
    return (
        f"DETECTION_MAX_INSTANCES {limit['detection_max_instances']} is below the "
        f"{limit['largest_gt_instances']} instances of the fullest val image: recall and "
        "AP there are capped by the setting"
    )


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _mae(stats: Mapping[str, Any]) -> str:
    """``2.08 [1.80, 2.40]``; the interval left out when absent."""
    if stats.get("mae_pp") is None:
        return "n/a"
    interval = stats.get("mae_ci95_pp")
    text = f"{stats['mae_pp']:.2f}"
    return f"{text} [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else text


def _verdict(baseline: Mapping[str, Any]) -> str:
    if baseline.get("applicable") is False:
        return "-"
    return {
        "model better": "better",
        "baseline better": "worse",
        "no clear difference": "no clear difference",
    }.get(baseline.get("verdict"), "n/a")
