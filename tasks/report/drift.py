"""Has today moved away from the last weeks? Per class, on the area-ratio distribution.

Two statistics per class, today's images against the trailing window's (the ``window_days``
before today):

- **PSI** (population stability index) over fixed area-ratio bins — absent (0), then
  (0, 1 %], (1, 2 %], (2, 5 %], (5, 10 %], (10, 20 %], (20, 30 %], (30, 50 %], (50, 100 %] —
  ``sum((p_today - p_window) * ln(p_today / p_window))`` with shares floored at 1e-4.
  Drifting at ``psi >= 0.2`` (the usual "significant shift").
- **KS**: the two-sample Kolmogorov–Smirnov statistic D; drifting when D exceeds its
  critical value at ``ks_alpha`` (0.01): ``sqrt(-ln(alpha / 2) / 2) * sqrt((n + m) / (n m))``.

A class drifts when both say so and both samples hold at least ``min_images`` images (PSI
alone flags small samples; KS alone flags tiny but certain shifts). Rates: today's error rate
or share of images with no detection "jumps" when it exceeds the window's daily mean by more
than ``rate_jump`` (0.1, ten percentage points) and by three standard deviations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

AREA_EDGES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # upper bounds of the bins after "absent"


@dataclasses.dataclass(frozen=True)
class DriftSettings:
    """Thresholds of the drift statistics (see the module docstring)."""

    window_days: int = 28
    psi: float = 0.2
    ks_alpha: float = 0.01
    min_images: int = 20
    rate_jump: float = 0.1


@dataclasses.dataclass(frozen=True)
class DriftRow:
    """One row of the ``drift`` table (``tasks.parquet_schemas.DRIFT``)."""

    class_name: str
    statistic: str
    value: float
    threshold: float
    drifting: bool
    window_days: int
    today_images: int
    window_images: int


@dataclasses.dataclass(frozen=True)
class RateJump:
    """A daily rate (``error_rate``, ``no_detection_rate``) well above its window."""

    rate: str
    today: float
    window_mean: float
    window_std: float


def area_bins(ratios: np.ndarray) -> np.ndarray:
    """Share of values per bin: absent, then the ``AREA_EDGES`` bins, then above 50 %."""
    ratios = np.asarray(ratios, dtype=float)
    index = np.where(ratios <= 0.0, 0, 1 + np.searchsorted(AREA_EDGES, ratios, side="left"))
    counts = np.bincount(index, minlength=len(AREA_EDGES) + 2)
    return counts / max(len(ratios), 1)


def psi(today: np.ndarray, window: np.ndarray) -> float:
    """Population stability index of ``today`` against ``window`` over the area bins."""
    p, q = (np.maximum(area_bins(sample), 1e-4) for sample in (today, window))
    return float(np.sum((p - q) * np.log(p / q)))


def ks_critical(n: int, m: int, alpha: float) -> float:
    """The two-sample KS statistic's critical value at ``alpha`` (asymptotic)."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def class_drift(
    class_name: str, today: Sequence[float], window: Sequence[float], settings: DriftSettings
) -> list[DriftRow]:
    """The ``psi`` and ``ks`` rows of one class (``drifting`` needs both and enough images)."""
    today, window = np.asarray(today, float), np.asarray(window, float)
    n, m = len(today), len(window)
    enough = min(n, m) >= settings.min_images
    if n == 0 or m == 0:
        value_psi, value_ks, critical = 0.0, 0.0, 1.0
    else:
        value_psi = psi(today, window)
        value_ks = float(stats.ks_2samp(today, window).statistic)
        critical = ks_critical(n, m, settings.ks_alpha)
    both = enough and value_psi >= settings.psi and value_ks > critical
    common = dict(window_days=settings.window_days, today_images=n, window_images=m)
    return [
        DriftRow(class_name, "psi", value_psi, settings.psi, both, **common),
        DriftRow(class_name, "ks", value_ks, critical, both, **common),
    ]


def rate_jump(
    rate: str, today: float, window: Sequence[float], settings: DriftSettings
) -> RateJump | None:
    """A ``RateJump`` when today's rate is well above the window's daily rates, else None."""
    if len(window) == 0:
        return None
    mean, std = float(np.mean(window)), float(np.std(window))
    if today > mean + settings.rate_jump and today > mean + 3 * std:
        return RateJump(rate, today, mean, std)
    return None
