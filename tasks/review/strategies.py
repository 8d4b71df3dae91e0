"""Why an image is worth a reviewer's time: one function per documented strategy.

Each strategy reads batch inference's rows (pandas frames of the committed tables) and returns
``Pick`` records, most worth reviewing first; ties are broken by image URI, so the same tables
always give the same order.

- ``low-confidence``: detections scoring inside a band (default 0.5 <= score < 0.8), the
  lowest such score first: the model saw something and was unsure.
- ``class-margin``: two detections of different classes on one object (box IoU >= 0.5) whose
  scores differ by at most a margin (default 0.1): the model could not tell the class.
- ``area-outlier``: a class's area ratio far from its trailing window (the days before
  ``since``, default 28): robust z = 0.6745 |x - median| / MAD >= 3.5, the largest first. With
  fewer than ``MIN_HISTORY`` earlier images the selected days themselves are the reference.
- ``disagreement``: the image's newest results of two model versions differ by at least 0.05
  in total absolute area ratio over the classes (5 percentage points), the largest first.
- ``random``: a uniform sample, seeded: the calibration set that says how good the model is
  where nothing looks wrong.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mrcnn.boxes import compute_overlaps

MIN_HISTORY = 10


@dataclasses.dataclass(frozen=True)
class Pick:
    """One image a strategy asks to review.

    Attributes:
        image_uri: the image.
        strategy: the strategy's name.
        rank: smaller is more worth reviewing (within one strategy).
        detail: one line for ``review.json`` saying what was seen.
    """

    image_uri: str
    strategy: str
    rank: float
    detail: str


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The strategies' settings (see the module docstring)."""

    score_band: tuple[float, float] = (0.5, 0.8)
    class_margin: float = 0.1
    overlap_iou: float = 0.5
    outlier_z: float = 3.5
    disagreement: float = 0.05


def low_confidence(instances: pd.DataFrame, band: tuple[float, float]) -> list[Pick]:
    """Images with detections scoring in ``[low, high)``, lowest score first."""
    low, high = band
    unsure = instances[(instances["score"] >= low) & (instances["score"] < high)]
    picks = [
        Pick(
            uri,
            "low-confidence",
            float(group["score"].min()),
            f"{len(group)} detection(s) scoring in [{low:g}, {high:g}), lowest "
            f"{group['score'].min():.2f} ({group.loc[group['score'].idxmin(), 'class_name']})",
        )
        for uri, group in unsure.groupby("image_uri")
    ]
    return _ordered(picks)


def class_margin(instances: pd.DataFrame, margin: float, overlap_iou: float) -> list[Pick]:
    """Images where two classes claim one object with nearly equal scores."""
    picks = []
    for uri, group in instances.groupby("image_uri"):
        if group["class_name"].nunique() < 2:
            continue
        boxes = group[["y1", "x1", "y2", "x2"]].to_numpy(float)
        scores, classes = group["score"].to_numpy(float), group["class_name"].to_numpy()
        iou = compute_overlaps(boxes, boxes)
        gap = np.abs(scores[:, None] - scores[None, :])
        close = (iou >= overlap_iou) & (classes[:, None] != classes[None, :]) & (gap <= margin)
        if close.any():
            i, j = np.unravel_index(np.argmin(np.where(close, gap, np.inf)), gap.shape)
            picks.append(
                Pick(
                    uri,
                    "class-margin",
                    float(gap[i, j]),
                    f"{classes[i]} {scores[i]:.2f} vs {classes[j]} {scores[j]:.2f} on "
                    f"one object (box IoU {iou[i, j]:.2f})",
                )
            )
    return _ordered(picks)


def area_outliers(
    current: pd.DataFrame, history: pd.DataFrame, min_z: float, window_days: int
) -> list[Pick]:
    """Images whose class share lies far outside the class's trailing distribution."""
    reference = history if history["image_uri"].nunique() >= MIN_HISTORY else current
    stats = reference.groupby("class_name")["area_ratio"].agg(
        median="median", mad=lambda x: float(np.median(np.abs(x - np.median(x))))
    )
    rows = current.join(stats, on="class_name", how="inner")
    # A class that never varied (MAD 0) still flags a change of one percentage point.
    scale = np.maximum(rows["mad"].to_numpy(), 0.01 * 0.6745)
    rows = rows.assign(z=0.6745 * np.abs(rows["area_ratio"] - rows["median"]) / scale)
    flagged = rows[rows["z"] >= min_z]
    source = f"trailing {window_days} days" if reference is history else "selected days"
    picks = []
    for uri, group in flagged.groupby("image_uri"):
        top = group.loc[group["z"].idxmax()]
        picks.append(
            Pick(
                uri,
                "area-outlier",
                -float(top["z"]),
                f"{top['class_name']} covers {100 * top['area_ratio']:.1f} % against a "
                f"median of {100 * top['median']:.1f} % over the {source} "
                f"(robust z {top['z']:.1f})",
            )
        )
    return _ordered(picks)


def disagreement(results: pd.DataFrame, min_difference: float) -> list[Pick]:
    """Images whose newest results of two model versions differ in area ratios."""
    newest = (
        results.sort_values("run_date")
        .groupby(["image_uri", "model_version", "class_name"], as_index=False)
        .last()
    )
    picks = []
    for uri, group in newest.groupby("image_uri"):
        versions = sorted(group["model_version"].unique(), key=_version_key)
        if len(versions) < 2:
            continue
        old, new = (
            group[group["model_version"] == v].set_index("class_name")["area_ratio"]
            for v in versions[-2:]
        )
        difference = (new - old.reindex(new.index, fill_value=0.0)).abs()
        total = float(difference.sum())
        if total >= min_difference:
            worst = difference.idxmax()
            picks.append(
                Pick(
                    uri,
                    "disagreement",
                    -total,
                    f"versions {versions[-2]} and {versions[-1]} differ by "
                    f"{100 * total:.1f} pp of area in total ({worst} "
                    f"{100 * old.get(worst, 0.0):.1f} % vs {100 * new[worst]:.1f} %)",
                )
            )
    return _ordered(picks)


def random_sample(image_uris: list[str], seed: int) -> list[Pick]:
    """Every image in a seeded random order."""
    order = np.random.default_rng(seed).permutation(len(image_uris))
    ordered = sorted(image_uris)
    return [
        Pick(ordered[index], "random", float(position), "calibration sample")
        for position, index in enumerate(order)
    ]


def _ordered(picks: list[Pick]) -> list[Pick]:
    return sorted(picks, key=lambda pick: (pick.rank, pick.image_uri))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if str(version).isdigit() else (1 << 62, str(version))
