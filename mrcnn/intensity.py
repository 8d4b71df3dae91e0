"""Intensity normalisation: an image of any bit depth becomes the model's RGB uint8.

The model is trained on, and fed, RGB images of 0-255. A `Normalization` (the config's
INTENSITY_NORMALIZATION and NORMALIZATION_PERCENTILES, stored with the model) says how an
image's stored intensities get there:

- ``"scale"``: a fixed map of the file's range. 8-bit images are taken as stored; 16-bit
  images are divided by 257 (65535 -> 255) and rounded. A camera of 12 bits (0-4095) in a
  16-bit file then comes out at 0-16: nearly black.
- ``"percentile"``: per image, the ``low`` and ``high`` percentiles of its intensities, over
  all colour channels together, are mapped to 0 and 255, linearly, and what lies outside is
  clipped. Any bit depth, gain or offset fills the range. The channels share one map so that
  they keep their brightness relative to each other, and a channel without signal stays dark
  instead of having its noise stretched to full range. ``(0, 100)`` is the min-max stretch.
  An image whose two percentiles are equal is thresholded there: above is 255, the rest 0.

Grey images become RGB by repeating the channel; alpha is dropped before anything is measured.
A percentile is the smallest intensity with at least that share of the image's values at or
below it (NumPy's ``inverted_cdf`` method): it depends on the image's histogram only, so a grey
image reads the same whether its file stores one channel or three equal ones. Both maps are
lookup tables over the image's integer levels (docs/concepts/images.md gives their speed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mrcnn.errors import InvalidSetting

NORMALIZATIONS = ("scale", "percentile")
DEFAULT_PERCENTILES = (1.0, 99.8)
_LEVELS = {np.dtype(np.bool_): 2, np.dtype(np.uint8): 256, np.dtype(np.uint16): 65536}


@dataclass(frozen=True)
class Normalization:
    """How an image's intensities become 0-255 (see the module docstring).

    Attributes:
        method: one of `NORMALIZATIONS`.
        percentiles: ``(low, high)`` in percent, ``0 <= low < high <= 100``; read by
            ``"percentile"`` only.

    Raises:
        ValueError: an unknown method or bad percentiles, naming the Config setting.
    """

    method: str = "scale"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or self.method not in NORMALIZATIONS:
            raise InvalidSetting(
                f"INTENSITY_NORMALIZATION must be one of {NORMALIZATIONS}, got {self.method!r}"
            )
        object.__setattr__(self, "percentiles", _checked_percentiles(self.percentiles))

    @classmethod
    def from_config(cls, config: Any) -> Normalization:
        """The normalisation an `mrcnn.config.Config` (or anything with its two settings)
        asks for."""
        return cls(config.INTENSITY_NORMALIZATION, config.NORMALIZATION_PERCENTILES)

    def table(self, colours: np.ndarray) -> np.ndarray:
        """The lookup table, uint8 ``[levels]``, that maps this image's intensities to 0-255.

        Args:
            colours: the colour channels ``[H, W, C]`` (no alpha), bool, uint8 or uint16.
        """
        levels = _LEVELS[colours.dtype]
        if self.method == "scale":
            return _scale_table(levels)
        counts = np.bincount(
            colours.reshape(-1).view(np.uint8) if levels == 2 else colours.reshape(-1),
            minlength=levels,
        )
        low, high = _percentiles(counts, self.percentiles)
        values = np.arange(levels, dtype=np.float64)
        if high > low:
            stretched = np.rint(np.clip((values - low) * (255.0 / (high - low)), 0, 255))
        else:  # no spread between the percentiles: the limit of the map as high -> low
            stretched = np.where(values > low, 255.0, 0.0)
        return stretched.astype(np.uint8)


def to_rgb_uint8(image: np.ndarray, normalization: Normalization | None = None) -> np.ndarray:
    """The model's input of an image: RGB uint8 ``[H, W, 3]`` (a new array).

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` bool, uint8 or uint16; C = 1 (grey), 2 (grey and
            alpha), 3 (RGB) or 4 (RGBA), as `mrcnn.images.read_image` returns.
        normalization: how intensities become 0-255; default ``"scale"``.

    Raises:
        ValueError: another shape or type.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or not 1 <= image.shape[2] <= 4 or image.size == 0:
        raise ValueError(
            f"an image must be [H, W] or [H, W, C] with C of 1 to 4 (grey, grey and "
            f"alpha, RGB, RGBA), got shape {image.shape}"
        )
    if image.dtype.newbyteorder("=") not in _LEVELS:
        raise ValueError(
            f"intensities of {image.dtype} images have no normalisation; images "
            "must be bool, uint8 or uint16"
        )
    image = image.astype(image.dtype.newbyteorder("="), copy=False)
    colours = image[..., :3] if image.shape[2] >= 3 else image[..., :1]
    table = (normalization or Normalization()).table(colours)
    rgb = table[colours.view(np.uint8) if colours.dtype == np.bool_ else colours]
    return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb


def _scale_table(levels: int) -> np.ndarray:
    """``"scale"``: 0/1 -> 0/255, 8-bit as is, 16-bit rounded x / 257."""
    if levels == 2:
        return np.array([0, 255], np.uint8)
    values = np.arange(levels, dtype=np.uint32)
    if levels == 256:
        return values.astype(np.uint8)
    # round(x / 257) in integers: x / 257 is never halfway between two integers.
    return ((2 * values + 257) // 514).astype(np.uint8)


def _percentiles(counts: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """The percentiles of the values a histogram ``counts[level]`` counts, as ``np.percentile``
    computes them with ``method="inverted_cdf"``: the smallest value with at least that share of
    the values at or below it."""
    cumulative = np.cumsum(counts)
    count = int(cumulative[-1])
    found = []
    for percentile in percentiles:
        # numpy's order statistic for this method: ceil(n q - 1), within 0..n-1
        order = min(max(math.ceil(count * (percentile / 100.0) - 1), 0), count - 1)
        # order statistic k is the first level whose cumulative count exceeds k
        found.append(float(np.searchsorted(cumulative, order, side="right")))
    return found[0], found[1]


def _checked_percentiles(value: Any) -> tuple[float, float]:
    """``(low, high)`` as floats, or ValueError naming NORMALIZATION_PERCENTILES."""
    pair = list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    numbers = (
        pair is not None
        and len(pair) == 2
        and all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, bool)
            and math.isfinite(v)
            for v in pair
        )
    )
    if not numbers or not 0 <= pair[0] < pair[1] <= 100:
        raise InvalidSetting(
            "NORMALIZATION_PERCENTILES must be two numbers (low, high) with "
            f"0 <= low < high <= 100, got {value!r}"
        )
    return float(pair[0]), float(pair[1])
