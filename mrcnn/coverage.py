"""How right per-image coverage numbers are: bias, mean absolute error with a bootstrap
interval, count error, and a paired comparison with a baseline.

The **coverage** (area ratio) of a class in an image is the share of its pixels covered by the
class, in percent; errors are in percentage points (pp). Every function takes one class's
per-image values as `[N]` arrays (N images, the same images in the same order for prediction
and truth) and returns a frozen dataclass. numpy only: the evaluation flow, the benchmarks and
the reports share these definitions without importing TensorFlow or Prefect.

**Bootstrap.** An interval resamples the *images* with replacement `resamples` times (seeded)
and takes the percentiles of the resampled means (the percentile bootstrap). The resamples
depend only on the random seed and the image count, so a model and a baseline scored on the same
images are resampled alike: their intervals and their difference are paired by image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
_DRAWS_PER_BLOCK = 1 << 20  # indices drawn at once: 8 MB, whatever the number of images


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: `resamples` resamples of the images, seeded, at `confidence`."""

    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED
    confidence: float = CONFIDENCE

    def __post_init__(self) -> None:
        if self.resamples < 1 or not 0.0 < self.confidence < 1.0:
            raise ValueError(
                f"a bootstrap needs resamples >= 1 and a confidence in (0, 1), got "
                f"{self.resamples} and {self.confidence}"
            )


@dataclass(frozen=True)
class Interval:
    """A closed interval `[low, high]`."""

    low: float
    high: float

    def as_list(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True)
class CoverageError:
    """Predicted against true coverage of one class over N images (pp).

    Attributes:
        images: N.
        mae_pp: mean over images of |predicted - true|.
        mae_interval_pp: bootstrap interval of `mae_pp`.
        bias_pp: mean over images of predicted - true; positive when the prediction covers
            too much.
    """

    images: int
    mae_pp: float
    mae_interval_pp: Interval
    bias_pp: float


@dataclass(frozen=True)
class CountError:
    """Predicted against true instance counts of one class over N images.

    Attributes:
        images: N.
        mean_absolute: mean over images of |predicted - true| instances.
        median_relative: median of |predicted - true| / true over the images where the class
            is present (true > 0); None when it is present in none.
        images_with_instances: how many images the median is taken over.
    """

    images: int
    mean_absolute: float
    median_relative: float | None
    images_with_instances: int


@dataclass(frozen=True)
class Comparison:
    """A model's coverage MAE minus a baseline's on the same images, paired by image (pp).

    Attributes:
        difference_pp: MAE(model) - MAE(baseline); negative when the model is closer.
        interval_pp: bootstrap interval of the difference.
        verdict: "model better" (the interval lies below 0), "baseline better" (above 0) or
            "no clear difference" (it contains 0).
    """

    difference_pp: float
    interval_pp: Interval
    verdict: str


def resample_indices(images: int, bootstrap: Bootstrap = Bootstrap()) -> Iterator[np.ndarray]:
    """The bootstrap's image indices, drawn with replacement, as blocks of resamples: int
    `[rows, images]` each, `resamples` rows in all (blocks keep memory bounded)."""
    if images < 1:
        raise ValueError("a bootstrap needs at least one image")
    rng = np.random.default_rng(bootstrap.seed)
    rows = max(1, _DRAWS_PER_BLOCK // images)
    for start in range(0, bootstrap.resamples, rows):
        yield rng.integers(0, images, size=(min(rows, bootstrap.resamples - start), images))


def mean_interval(values: np.ndarray, bootstrap: Bootstrap = Bootstrap()) -> Interval:
    """Percentile-bootstrap interval of the mean of per-image `values` `[N]`."""
    values = _per_image(values, "values")
    means = np.concatenate(
        [values[block].mean(axis=1) for block in resample_indices(len(values), bootstrap)]
    )
    tail = 50.0 * (1.0 - bootstrap.confidence)
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def coverage_error(
    predicted: np.ndarray, truth: np.ndarray, bootstrap: Bootstrap = Bootstrap()
) -> CoverageError:
    """MAE with its interval and the bias of predicted coverages `[N]` against true ones `[N]`."""
    predicted, truth = _paired(predicted, truth)
    errors = predicted - truth
    absolute = np.abs(errors)
    return CoverageError(
        len(truth), float(absolute.mean()), mean_interval(absolute, bootstrap), float(errors.mean())
    )


def count_error(predicted: np.ndarray, truth: np.ndarray) -> CountError:
    """Instance-count error of predicted counts `[N]` against true counts `[N]`."""
    predicted, truth = _paired(predicted, truth)
    absolute = np.abs(predicted - truth)
    present = truth > 0
    # An image without the class has no relative error (x / 0); its absolute error counts.
    relative = absolute[present] / truth[present]
    return CountError(
        len(truth),
        float(absolute.mean()),
        float(np.median(relative)) if relative.size else None,
        int(present.sum()),
    )


def compare(
    predicted: np.ndarray,
    baseline: np.ndarray,
    truth: np.ndarray,
    bootstrap: Bootstrap = Bootstrap(),
) -> Comparison:
    """Whether the model's coverages `[N]` are closer to the truth `[N]` than a baseline's."""
    predicted, truth = _paired(predicted, truth)
    baseline, _ = _paired(baseline, truth)
    differences = np.abs(predicted - truth) - np.abs(baseline - truth)
    interval = mean_interval(differences, bootstrap)
    if interval.high < 0:
        verdict = "model better"
    elif interval.low > 0:
        verdict = "baseline better"
    else:
        verdict = "no clear difference"
    return Comparison(float(differences.mean()), interval, verdict)


def _per_image(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or not len(values):
        raise ValueError(
            f"{name} must be one value per image, at least one; got shape {values.shape}"
        )
    return values


def _paired(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predicted, truth = _per_image(predicted, "predicted"), _per_image(truth, "truth")
    if predicted.shape != truth.shape:
        raise ValueError(
            f"predicted and true values must cover the same images: "
            f"{len(predicted)} vs {len(truth)}"
        )
    return predicted, truth
