"""Simple predictors a trained model must beat: predicting nothing, Otsu's threshold, and Otsu's
threshold split into instances by a watershed.

**Nothing** predicts 0 % coverage and no instance in every image; its error is the true
coverage itself, the floor any useful model must clear.

**Otsu** is what a microscopist tries first: threshold the grey image at Otsu's value
(scikit-image `threshold_otsu`) and call every pixel above it foreground. The grey image is
the mean of the R, G and B channels of the image exactly as `detect()` receives it (before
molding: no resizing, no mean subtraction), rounded to whole levels for integer images so
that the histogram has one bin per level and the threshold falls between levels (float
images: 256 bins). The foreground's share of the pixels is
the predicted coverage, and its connected components (8-connected, no size filter) the
predicted instances. It separates one bright class from a dark background, as in
fluorescence microscopy; on a set with dark objects on a bright background it labels the
background and scores badly, and it says nothing about which of several classes a pixel
belongs to, so it is computed only for single-class datasets.

**Otsu + watershed** is the classical instance recipe of CellProfiler-style pipelines
(`otsu_watershed`): Otsu's foreground with its holes filled, the Euclidean distance of each
foreground pixel to the background, one marker at each local maximum of that distance (at
least `min_distance` pixels apart, one at least in each connected component), and a watershed
from the markers over the negated distance, within the foreground. Touching round objects
meet at a saddle of the distance map, so each gets its own instance where a connected
component would merge them. `min_distance` sets how close two objects' centres may lie:
about half the typical object diameter (too small splits elongated objects, too large merges
small neighbours). The same single-class, bright-on-dark limits as Otsu's threshold apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.segmentation import watershed


@dataclass(frozen=True)
class ThresholdPrediction:
    """What a threshold predicts for one image.

    Attributes:
        threshold: the grey value; pixels above it are foreground.
        coverage_pct: the foreground's share of the pixels, in percent.
        objects: connected foreground components (8-connected).
    """

    threshold: float
    coverage_pct: float
    objects: int


def grey(image: np.ndarray) -> np.ndarray:
    """`[H, W]`: the mean of the channels of an `[H, W, C]` image (a `[H, W]` image as is);
    integer images give whole levels (int64, rounded), others float64."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"an image must be [H, W] or [H, W, C], got shape {image.shape}")
    mean = image.astype(np.float64) if image.ndim == 2 else image.mean(axis=2, dtype=np.float64)
    return np.rint(mean).astype(np.int64) if np.issubdtype(image.dtype, np.integer) else mean


def otsu_prediction(image: np.ndarray) -> ThresholdPrediction:
    """Otsu's threshold on the grey image: coverage and objects (see the module docstring).

    Args:
        image: `[H, W, 3]` RGB (or `[H, W]` grey), any numeric type.

    Returns:
        The prediction; a uniform image has no pixel above its threshold: 0 %, no object.
    """
    values = grey(image)
    threshold = float(threshold_otsu(values))
    foreground = values > threshold
    objects = int(label(foreground, connectivity=2).max())
    return ThresholdPrediction(threshold, 100.0 * float(foreground.mean()), objects)


def otsu_not_applicable(class_names: Sequence[str]) -> str | None:
    """Why Otsu's threshold is no baseline for these classes, or None when it is one.

    Args:
        class_names: the classes without the background.
    """
    if len(class_names) == 1:
        return None
    return (
        f"not applicable: the dataset has {len(class_names)} classes; Otsu's threshold "
        "separates one bright class from a dark background"
    )


def otsu_watershed(image: np.ndarray, min_distance: int) -> np.ndarray:
    """Instances by Otsu's threshold and a distance-transform watershed (the module docstring).

    Args:
        image: `[H, W, 3]` RGB (or `[H, W]` grey), any numeric type.
        min_distance: least distance in pixels between two instances' markers, >= 1.

    Returns:
        int32 `[H, W]` labels: 0 the background, 1..N the instances (N may be 0).

    Raises:
        ValueError: `min_distance` below 1.
    """
    if min_distance < 1:
        raise ValueError(f"min_distance must be >= 1 pixel, got {min_distance}")
    values = grey(image)
    foreground = ndimage.binary_fill_holes(values > threshold_otsu(values))
    components = label(foreground, connectivity=2)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=components, exclude_border=False
    )
    markers = np.zeros(values.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=foreground, connectivity=2)
    return labels.astype(np.int32)


def instance_masks(labels: np.ndarray) -> np.ndarray:
    """bool `[H, W, N]` masks of a label image's instances 1..N (values absent give none)."""
    present = np.unique(labels)
    present = present[present > 0]
    return labels[..., None] == present[None, None, :]
