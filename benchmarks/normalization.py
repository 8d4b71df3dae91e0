"""Intensity normalisation on the real nuclei made 12-bit: what each map gives the model.

    python -m benchmarks.normalization [--data ../shared/data/nuclei_dsb2018] [--every 1]

Each nuclei image (8-bit fluorescence, grey content in R = G = B) becomes the frame of a 12-bit
camera in a uint16 array: offset 100, a gain drawn per image from 2 to 15 levels per 8-bit
level, Gaussian read noise of 3 levels, clipped to 0..4095 (seed 0). Maps compared:
``scale``, ``percentile`` (1, 99.8; one map for all colour channels, as `mrcnn.intensity`
does) and, for the choice, the same percentiles taken per channel.

Per map, over the images (medians unless said):

- ``levels``: distinct grey levels of the model's input; ``max``: its brightest level;
- ``vs_8bit_mad``: mean absolute difference, in 8-bit levels, between the map of the 12-bit
  frame and the same map of the original 8-bit file: how much the model's input depends on
  the camera (mean over images);
- ``otsu_mae_pp``: the Otsu baseline's coverage error (`mrcnn.baselines`) against the
  manifest's foreground fraction, in percentage points (mean over images); ``original_8bit``
  gives it for the 8-bit files as stored.

``single_stain``: the frame in the blue channel only, red and green holding offset and noise,
as a one-stain image saved as RGB: ``empty_channels_mean`` (mean level of red and green after
the map) and ``otsu_mae_pp`` (Otsu on the channels' mean).

``seconds``: `to_rgb_uint8` of a 2048 x 2048 12-bit frame, grey and RGB (median of 5 runs).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from mrcnn.baselines import otsu_prediction
from mrcnn.images import read_image
from mrcnn.intensity import Normalization, to_rgb_uint8

DATA = common.REPO_ROOT.parent / "shared" / "data" / "nuclei_dsb2018"
SCALE = Normalization()
PERCENTILE = Normalization("percentile", (1.0, 99.8))
Map = Callable[[np.ndarray], np.ndarray]


def per_channel(image: np.ndarray) -> np.ndarray:
    """The percentile map taken channel by channel (the alternative to one map)."""
    return np.concatenate(
        [to_rgb_uint8(image[..., c], PERCENTILE)[..., :1] for c in range(image.shape[2])], axis=2
    )


MAPS: dict[str, Map] = {
    "scale": lambda image: to_rgb_uint8(image, SCALE),
    "percentile": lambda image: to_rgb_uint8(image, PERCENTILE),
    "percentile_per_channel": per_channel,
}


def twelve_bit(rgb8: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 12-bit camera's frame of the same scene: offset, a random gain, read noise."""
    gain = rng.uniform(2.0, 15.0)
    noise = rng.normal(0, 3.0, rgb8.shape[:2] + (1,))
    frame = 100.0 + gain * rgb8[..., :1].astype(np.float64) + noise
    return np.clip(np.rint(frame), 0, 4095).astype(np.uint16).repeat(3, axis=2)


def single_stain(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frame's grey in blue; red and green hold only the offset and read noise."""
    empty = np.clip(np.rint(rng.normal(100.0, 3.0, frame.shape[:2] + (2,))), 0, 4095)
    return np.concatenate([empty.astype(np.uint16), frame[..., :1]], axis=2)


def measure(data: Path, every: int) -> dict[str, Any]:
    with open(data / "manifest.csv", newline="") as handle:
        truth = {
            row["image_id"]: 100.0 * float(row["foreground_fraction"])
            for row in csv.DictReader(handle)
        }
    rng = np.random.default_rng(0)
    found: dict[str, dict[str, list[float]]] = {name: {} for name in MAPS}
    original_errors = []
    stain: dict[str, dict[str, list[float]]] = {name: {} for name in MAPS}
    for image_id in sorted(truth)[::every]:
        original = read_image(data / "stage1_train" / image_id / "images" / f"{image_id}.png")
        rgb8 = original[..., :3]
        frame = twelve_bit(rgb8, rng)
        stained = single_stain(frame, rng)
        original_errors.append(abs(otsu_prediction(rgb8).coverage_pct - truth[image_id]))
        for name, normalise in MAPS.items():
            model_input = normalise(frame)
            grey = model_input[..., 0]
            row = found[name]
            row.setdefault("levels", []).append(len(np.unique(grey)))
            row.setdefault("max", []).append(int(grey.max()))
            difference = np.abs(model_input.astype(int) - normalise(rgb8).astype(int)).mean()
            row.setdefault("vs_8bit_mad", []).append(float(difference))
            error = abs(otsu_prediction(model_input).coverage_pct - truth[image_id])
            row.setdefault("otsu_mae_pp", []).append(error)
            stained_input = normalise(stained)
            stain[name].setdefault("empty_channels_mean", []).append(
                float(stained_input[..., :2].mean())
            )
            stain[name].setdefault("otsu_mae_pp", []).append(
                abs(otsu_prediction(stained_input).coverage_pct - truth[image_id])
            )
    return {
        "images": len(original_errors),
        "original_8bit": {"otsu_mae_pp": round(float(np.mean(original_errors)), 2)},
        "maps": {
            name: {
                "levels": float(np.median(row["levels"])),
                "max": float(np.median(row["max"])),
                "vs_8bit_mad": round(float(np.mean(row["vs_8bit_mad"])), 2),
                "otsu_mae_pp": round(float(np.mean(row["otsu_mae_pp"])), 2),
            }
            for name, row in found.items()
        },
        "single_stain": {
            name: {key: round(float(np.mean(values)), 2) for key, values in row.items()}
            for name, row in stain.items()
        },
    }


def timings() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 4096, (2048, 2048), dtype=np.uint16)
    rgb = rng.integers(0, 4096, (2048, 2048, 3), dtype=np.uint16)
    out = {}
    for name, normalization in (("scale", SCALE), ("percentile", PERCENTILE)):
        for kind, image in (("grey", grey), ("rgb", rgb)):
            seconds, _ = common.time_runs(lambda i=image, n=normalization: to_rgb_uint8(i, n), 1, 5)
            out[f"{name}_{kind}_2048"] = round(float(np.median(seconds)), 4)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the nuclei_dsb2018 folder")
    parser.add_argument("--every", type=int, default=1, help="take every N-th image")
    args = parser.parse_args(argv)
    if not (args.data / "manifest.csv").is_file():
        raise SystemExit(f"no nuclei_dsb2018 data at {args.data} (its manifest.csv is missing)")
    document = common.header("normalization", argv)
    document.update(measure(args.data, args.every), seconds=timings())
    common.emit(document)


if __name__ == "__main__":
    main(sys.argv[1:])
