"""Config values chosen from the data: image size, anchors, instance limits, ROIs, mean pixel.

Choosing anchors, instance limits and image sizes by hand is where matterport users most often
go wrong; `choose` derives them from `DatasetStats` (the training split's image sizes, the
ground-truth boxes and their count per image, the mean pixel), each with the reason:

- **Image size.** Where the objects are small beside the images — a crop of four times the
  95th percentile of the object side (a multiple of 64, at least 128) fits in nearly every
  image (its 5th percentile short side), and is smaller than the typical image or a tenth of
  the images are larger than the typical one — the model trains on random square crops at the
  images' own scale (`IMAGE_RESIZE_MODE` "crop", `IMAGE_MIN_DIM` the crop) and detects on whole
  images padded to multiples of 64; otherwise on whole images resized and padded to the
  median long side, rounded up to a multiple of 64 (at most 1024).
- **Anchors.** One scale per pyramid level, doubling from the largest power of two at or
  below the 5th percentile of the objects' √(h·w) at the training scale (between 8 and 128,
  and small enough that the largest anchor fits in the training image);
  the aspect ratios stay (0.5, 1, 2) unless a tenth of the objects are more elongated than
  2.5 : 1, then (0.25, 0.5, 1, 2, 4) (not when starting from pretrained weights, whose RPN
  has three anchors per place).
- **Instances.** `MAX_GT_INSTANCES` the most instances in one image (rounded up to 8, at least
  8); `DETECTION_MAX_INSTANCES` a quarter more (at least the default 100), and as many
  proposals kept at inference.
- **ROIs.** `TRAIN_ROIS_PER_IMAGE` the power of two at or above three times the median count
  per training view (an image or a crop), between 16 and 512: with a positive share of one
  third, the typical view's instances can all be sampled.
- **Mean pixel.** The training images' mean colour when training from scratch; pretrained
  weights keep the mean they were trained with.

Keys the user sets (training config file, preset, command line) are never changed; `choose`
reports them as kept.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any

import numpy as np

from mrcnn.config import Config
from mrcnn.errors import InvalidInput

DEFAULTS = Config  # the class attributes are matterport's defaults
MAX_SIDE = 1024
SMALLEST_ANCHOR, LARGEST_FIRST_ANCHOR = 8, 128
ELONGATED = 2.5
WIDE_RATIOS = (0.25, 0.5, 1, 2, 4)


@dataclasses.dataclass(frozen=True)
class DatasetStats:
    """What `choose` reads of a training split.

    Attributes:
        image_sizes: `[N, 2]` (height, width) of every image.
        box_sizes: `[M, 2]` (height, width) in pixels of every ground-truth instance.
        instances: `[N]` instances per image.
        mean_pixel: the images' mean (R, G, B), or None when not measured.
    """

    image_sizes: np.ndarray
    box_sizes: np.ndarray
    instances: np.ndarray
    mean_pixel: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if len(self.image_sizes) == 0 or len(self.box_sizes) == 0:
            raise InvalidInput("choosing a config from the data needs images with instances")


@dataclasses.dataclass(frozen=True)
class Choice:
    """One Config value: what it is, matterport's default, and why (or that the user set it)."""

    key: str
    value: Any
    default: Any
    why: str
    chosen: bool = True  # False: set by the user and kept

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": _plain(self.value),
            "default": _plain(self.default),
            "why": self.why,
            "chosen": self.chosen,
        }


def choose(
    stats: DatasetStats,
    user_set: Collection[str] = (),
    pretrained: bool = False,
    user_values: dict[str, Any] | None = None,
) -> list[Choice]:
    """The Config values the data suggests, in the order the module docstring gives.

    Args:
        stats: the training split.
        user_set: Config keys the user set; they are kept and reported as such.
        pretrained: training starts from pretrained weights (MEAN_PIXEL and the anchor
            ratios stay theirs).
        user_values: the values of `user_set` (so later choices follow them, e.g. anchors
            measured at the user's image size).
    """
    given = dict(user_values or {})
    choices: list[Choice] = []

    def decide(key: str, value: Any, why: str) -> Any:
        if key in user_set:
            kept = given.get(key, value)
            choices.append(Choice(key, kept, _default(key), "set in the training config", False))
            return kept
        choices.append(Choice(key, value, _default(key), why))
        return value

    mode, side, scale = _image_size(stats, decide)
    _anchors(stats, side, scale, pretrained, decide)
    _instances(stats, decide)
    _rois(stats, mode, side, decide)
    if pretrained:
        decide("MEAN_PIXEL", _default("MEAN_PIXEL"), "kept: the pretrained weights' mean")
    elif stats.mean_pixel is not None:
        decide(
            "MEAN_PIXEL",
            [round(float(v), 1) for v in stats.mean_pixel],
            "the training images' mean colour",
        )
    return choices


def as_overrides(choices: list[Choice]) -> dict[str, Any]:
    """The chosen (not user-set) values as Config overrides."""
    return {choice.key: _plain(choice.value) for choice in choices if choice.chosen}


def table(choices: list[Choice]) -> str:
    """The choices as a plain text table: key, value, default, why."""
    rows = [("key", "value", "default", "why")] + [
        (c.key, _text(c.value), _text(c.default), c.why) for c in choices
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3]
        for row in rows
    )


# ---------------------------------------------------------------------------- the rules
def _image_size(stats: DatasetStats, decide) -> tuple[str, int, float]:
    """Resize mode, training side and the scale objects are seen at."""
    short = np.min(stats.image_sizes, axis=1)
    long = np.max(stats.image_sizes, axis=1)
    object_side = float(np.percentile(np.max(stats.box_sizes, axis=1), 95))
    crop = max(128, _ceil64(4 * object_side))
    square = min(MAX_SIDE, _ceil64(float(np.median(long))))
    shrunk = float(np.mean(long > square))  # images a square of that side would shrink
    if crop <= float(np.percentile(short, 5)) and (crop < square or shrunk >= 0.1):
        mode = decide(
            "IMAGE_RESIZE_MODE",
            "crop",
            f"objects are small (95 % at most {object_side:.0f} px) beside images of "
            f"{np.min(long):.0f}–{np.max(long):.0f} px: train on crops at their own "
            "scale, detect on whole images",
        )
    else:
        mode = decide("IMAGE_RESIZE_MODE", "square", "whole images: objects are large beside them")
    if mode == "crop":
        side = decide(
            "IMAGE_MIN_DIM", crop, f"a multiple of 64 of at least 4 × {object_side:.0f} px"
        )
        return mode, int(side), 1.0
    if mode != "square":  # pad64 or none: images keep their size
        return mode, int(np.median(long)), 1.0
    side = decide(
        "IMAGE_MAX_DIM",
        square,
        f"median long side {np.median(long):.0f} px, rounded "
        "up to 64" + (f", capped at {MAX_SIDE}" if square == MAX_SIDE else ""),
    )
    decide("IMAGE_MIN_DIM", side, "as IMAGE_MAX_DIM: images are padded to a square")
    return mode, int(side), float(np.median(int(side) / long))


def _anchors(stats: DatasetStats, side: int, scale: float, pretrained: bool, decide) -> None:
    sizes = np.sqrt(stats.box_sizes[:, 0] * stats.box_sizes[:, 1]) * scale
    small = float(np.percentile(sizes, 5))
    levels = len(DEFAULTS.BACKBONE_STRIDES)
    # The largest anchor (the first × 2^4) stays within the training image.
    fits = 2 ** math.floor(math.log2(max(side / 2 ** (levels - 1), 1.0)))
    first = int(
        np.clip(
            min(2 ** math.floor(math.log2(max(small, 1.0))), fits),
            SMALLEST_ANCHOR,
            LARGEST_FIRST_ANCHOR,
        )
    )
    scales = [first * 2**level for level in range(levels)]
    decide(
        "RPN_ANCHOR_SCALES",
        scales,
        f"5 % of the objects are under {small:.0f} px "
        f"(√(h·w)); the largest anchor {scales[-1]} px, 95 % under "
        f"{np.percentile(sizes, 95):.0f} px",
    )
    aspect = stats.box_sizes[:, 0] / np.maximum(stats.box_sizes[:, 1], 1)
    low, high = np.percentile(aspect, [10, 90])
    if pretrained or (low >= 1 / ELONGATED and high <= ELONGATED):
        why = (
            "kept: the pretrained RPN has three anchors per place"
            if pretrained
            else f"80 % of the objects have h/w within {low:.2f}–{high:.2f}"
        )
        decide("RPN_ANCHOR_RATIOS", list(DEFAULTS.RPN_ANCHOR_RATIOS), why)
        return
    decide(
        "RPN_ANCHOR_RATIOS",
        list(WIDE_RATIOS),
        f"a tenth of the objects are more elongated "
        f"than {ELONGATED:g} : 1 (h/w {low:.2f}–{high:.2f} for 80 %)",
    )


def _instances(stats: DatasetStats, decide) -> None:
    most = int(np.max(stats.instances))
    decide("MAX_GT_INSTANCES", max(8, _ceil(most, 8)), f"at most {most} instances in one image")
    detections = max(DEFAULTS.DETECTION_MAX_INSTANCES, _ceil(1.25 * most, 8))
    chosen = decide(
        "DETECTION_MAX_INSTANCES",
        detections,
        f"a quarter more than the {most} of the fullest image (at least 100)",
    )
    decide(
        "POST_NMS_ROIS_INFERENCE",
        max(DEFAULTS.POST_NMS_ROIS_INFERENCE, 2 * int(chosen)),
        "at least twice the detections kept",
    )


def _rois(stats: DatasetStats, mode: str, side: int, decide) -> None:
    counts = stats.instances.astype(float)
    if mode == "crop":  # a crop shows its share of the image's instances
        area = stats.image_sizes[:, 0] * stats.image_sizes[:, 1]
        counts = counts * np.minimum(1.0, side * side / area)
    typical = float(np.median(counts))
    rois = int(np.clip(2 ** math.ceil(math.log2(max(3 * typical, 1.0))), 16, 512))
    decide(
        "TRAIN_ROIS_PER_IMAGE",
        rois,
        f"three times the median {typical:.0f} instances per "
        f"training {'crop' if mode == 'crop' else 'image'} (a third are positives)",
    )


def _ceil64(value: float) -> int:
    return _ceil(value, 64)


def _ceil(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def _default(key: str) -> Any:
    return _plain(getattr(DEFAULTS, key))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def _text(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return str(value)
