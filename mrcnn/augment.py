"""Random augmentation that moves instance masks with the image.

Shapes: image [H, W, 3] uint8 RGB; masks [H, W, N] bool. Geometric operations (flips,
quarter turns, zoom) apply to both; photometric ones (brightness, contrast) to the image
only. `Augmentation` keeps H, W and N, as matterport's data pipeline requires of an
augmenter. `apply_augmentation` also takes albumentations-style callables, so a
`albumentations.Compose` can be plugged in without this package depending on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from mrcnn.errors import InvalidSetting

_PROBABILITIES = ("hflip", "vflip", "rot90")
_MAGNITUDES = ("brightness", "contrast")


@dataclass(frozen=True)
class Augmentation:
    """Random flips, quarter turns, zoom, brightness and contrast.

    Attributes:
        hflip: Probability of a left-right flip.
        vflip: Probability of an up-down flip.
        rot90: Probability of a rotation by k·90°, k uniform in {1, 2, 3}; on non-square
            images only the half turn keeps the shape, so k = 2 there.
        scale: (min, max) zoom factor range; the image is resized by a uniform draw, then
            centre-cropped or zero-padded back to its size. None: no zoom.
        brightness: Largest additive change, as a fraction of 255, in [0, 1].
        contrast: Largest relative change of contrast around the image mean, in [0, 1].
    """

    hflip: float = 0.0
    vflip: float = 0.0
    rot90: float = 0.0
    scale: tuple[float, float] | None = None
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self) -> None:
        for name in _PROBABILITIES + _MAGNITUDES:
            value = _real(name, getattr(self, name))
            if not 0.0 <= value <= 1.0:
                kind = "a probability" if name in _PROBABILITIES else "a magnitude"
                raise InvalidSetting(f"Augmentation.{name} is {kind} in [0, 1], got {value}")
        if self.scale is not None:
            if isinstance(self.scale, (str, bytes)) or len(self.scale) != 2:
                raise InvalidSetting(f"Augmentation.scale must be (min, max), got {self.scale!r}")
            low, high = (_real("scale", v) for v in self.scale)
            if not 0.0 < low <= high < math.inf:
                raise InvalidSetting(f"Augmentation.scale needs 0 < min <= max, got {self.scale!r}")
            object.__setattr__(self, "scale", (low, high))  # lists from JSON become tuples

    def to_dict(self) -> dict[str, Any]:
        """Returns the settings as JSON-friendly values (`scale` as a list or None)."""
        data = dataclasses.asdict(self)
        data["scale"] = list(self.scale) if self.scale is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Augmentation:
        """Builds an Augmentation from `to_dict` output; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSetting(
                f"Unknown Augmentation keys {unknown}; expected some of {sorted(known)}"
            )
        return cls(**data)

    def __call__(
        self, image: np.ndarray, masks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augments one image and its instance masks.

        Args:
            image: [H, W, 3] uint8.
            masks: [H, W, N] bool.
            rng: Source of every random draw; the same seed gives the same result.

        Returns:
            (image [H, W, 3] uint8, masks [H, W, N] bool), new arrays.
        """
        _check_pair(image, masks, "input")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if self.hflip and rng.random() < self.hflip:
            image, masks = image[:, ::-1], masks[:, ::-1]
        if self.vflip and rng.random() < self.vflip:
            image, masks = image[::-1], masks[::-1]
        if self.rot90 and rng.random() < self.rot90:
            k = int(rng.integers(1, 4)) if image.shape[0] == image.shape[1] else 2
            image, masks = np.rot90(image, k), np.rot90(masks, k)
        if self.scale is not None:
            image, masks = _zoom(image, masks, rng.uniform(*self.scale))
        image = self._photometric(image, rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(masks)

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shifts brightness, then scales contrast around the mean; rounds and clips."""
        if not (self.brightness or self.contrast):
            return image
        pixels = image.astype(np.float32)
        if self.brightness:
            pixels += rng.uniform(-self.brightness, self.brightness) * 255.0
        if self.contrast:
            mean = pixels.mean()
            pixels = (pixels - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Augmentation.{name} must be a number, got {value!r}")
    return float(value)


def _zoom(image: np.ndarray, masks: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resizes by `factor` (bilinear image, nearest masks), then fits back to [H, W]."""
    h, w = image.shape[:2]
    new_h, new_w = max(1, round(h * factor)), max(1, round(w * factor))
    if (new_h, new_w) == (h, w):
        return image, masks
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (new_w, new_h), Image.Resampling.BILINEAR
    )
    # Nearest source pixel by pixel centres, the same convention PIL's resize uses.
    rows = np.minimum(((np.arange(new_h) + 0.5) * h / new_h).astype(int), h - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * w / new_w).astype(int), w - 1)
    return _fit(np.asarray(resized), h, w), _fit(masks[rows][:, cols], h, w)


def _fit(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crops or zero-pads the first two axes of `array` to (height, width)."""
    for axis, size in ((0, height), (1, width)):
        have = array.shape[axis]
        if have > size:
            start = (have - size) // 2
            array = array[start : start + size] if axis == 0 else array[:, start : start + size]
        elif have < size:
            before = (size - have) // 2
            padding = [(0, 0)] * array.ndim
            padding[axis] = (before, size - have - before)
            array = np.pad(array, padding)
    return array


def _check_pair(image: Any, masks: Any, what: str) -> None:
    """Raises unless image is [H, W, 3] uint8 and masks is [H, W, N] bool."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = getattr(image, "dtype", type(image))
        raise TypeError(f"{what} image must be a uint8 array, got {got}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} image must be [H, W, 3], got shape {image.shape}")
    if not isinstance(masks, np.ndarray) or masks.dtype != np.bool_:
        got = getattr(masks, "dtype", type(masks))
        raise TypeError(f"{what} masks must be a bool array, got {got}")
    if masks.ndim != 3 or masks.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"{what} masks must be [H, W, N] with H, W = {image.shape[:2]}, got {masks.shape}"
        )


def apply_augmentation(
    augmentation: Augmentation | Callable[..., Mapping[str, Any]],
    image: np.ndarray,
    masks: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Augments an image and its masks with an `Augmentation` or an albumentations hook.

    A callable is invoked as `augmentation(image=image, masks=[m0, m1, ...])` with uint8
    0/1 masks (OpenCV-based transforms reject bool) and must return a dict with "image"
    and "masks", as `albumentations.Compose` does. It draws from its own random state, so
    `rng` only seeds `Augmentation`. Callables may change H and W (e.g. crops).

    Args:
        augmentation: An `Augmentation` or an albumentations-style callable.
        image: [H, W, 3] uint8.
        masks: [H, W, N] bool.
        rng: Random generator for `Augmentation`.

    Returns:
        (image [H', W', 3] uint8, masks [H', W', N] bool).
    """
    if isinstance(augmentation, Augmentation):
        return augmentation(image, masks, rng)
    if not callable(augmentation):
        raise TypeError(
            "augmentation must be an Augmentation or a callable taking (image=, masks=), "
            f"got {type(augmentation).__name__}"
        )
    _check_pair(image, masks, "input")
    count = masks.shape[-1]
    result = augmentation(image=image, masks=[masks[..., i].astype(np.uint8) for i in range(count)])
    if not isinstance(result, Mapping) or not {"image", "masks"} <= set(result):
        raise TypeError(
            f"augmentation must return a dict with 'image' and 'masks', got {type(result).__name__}"
        )
    out_image, out_masks = np.asarray(result["image"]), list(result["masks"])
    if len(out_masks) != count:
        raise ValueError(f"augmentation returned {len(out_masks)} masks for {count} instances")
    if out_masks:
        stacked = np.stack([np.asarray(m) for m in out_masks], axis=-1).astype(bool)
    else:
        stacked = np.zeros((*out_image.shape[:2], 0), bool)
    _check_pair(out_image, stacked, "augmented")
    return out_image, stacked
