"""mrcnn.intensity and its Config settings: a 12-bit camera's images are nearly black with
"scale" and fill 0-255 with "percentile"; the maps are exact; bad settings are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.images import read_image
from mrcnn.intensity import Normalization, to_rgb_uint8
from tests.support.builders import png_of, tiff_of

PERCENTILE = Normalization("percentile", (1.0, 99.8))


def twelve_bit_nuclei(seed: int = 0, size: int = 96) -> np.ndarray:
    """A 12-bit fluorescence-like frame: camera offset and read noise on a dark background,
    bright blobs up to the sensor's 4095. uint16 ``[H, W]`` with values in 0..4095."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size]
    frame = rng.normal(100.0, 12.0, (size, size))  # offset and read noise
    for _ in range(12):
        y, x = rng.uniform(0, size, 2)
        radius, peak = rng.uniform(4, 9), rng.uniform(1500, 4000)
        frame += peak * np.exp(-((rows - y) ** 2 + (columns - x) ** 2) / (2 * radius**2))
    return np.clip(np.rint(frame), 0, 4095).astype(np.uint16)


def reference_stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """The percentile map written out with np.percentile, in floating point."""
    lower, upper = np.percentile(values, [low, high], method="inverted_cdf").astype(float)
    stretched = (values.astype(np.float64) - lower) * 255.0 / (upper - lower)
    return np.clip(np.rint(stretched), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("encode", [png_of, tiff_of])
def test_a_12_bit_camera_is_nearly_black_scaled_and_full_range_stretched(encode):
    frame = twelve_bit_nuclei()
    assert frame.max() == 4095 and frame.dtype == np.uint16
    pixels = read_image(encode(frame))
    scaled = to_rgb_uint8(pixels)
    stretched = to_rgb_uint8(pixels, PERCENTILE)
    assert scaled.shape == stretched.shape == (96, 96, 3)
    assert scaled.max() <= 16
    assert stretched.min() == 0 and stretched.max() == 255
    assert len(np.unique(stretched)) > 200  # the range is filled, not two levels
    np.testing.assert_array_equal(stretched[..., 0], reference_stretch(frame, 1.0, 99.8))
    assert (stretched[..., 0] == stretched[..., 2]).all()  # grey: one channel, repeated


def test_percentiles_are_taken_over_all_colour_channels_together():
    frame = twelve_bit_nuclei(seed=1)
    noise = np.random.default_rng(2).normal(100, 12, (2, *frame.shape)).clip(0, 4095)
    # signal in blue only, as a single-stain image saved as RGB: red and green hold noise
    rgb = np.stack([*noise.astype(np.uint16), frame], axis=2)
    stretched = to_rgb_uint8(rgb, PERCENTILE)
    np.testing.assert_array_equal(stretched, reference_stretch(rgb, 1.0, 99.8))
    assert stretched[..., 2].max() == 255
    assert stretched[..., :2].max() < 40  # noise stays dark: one map for all channels


def test_a_grey_image_stretches_alike_stored_as_grey_or_as_rgb():
    frame = twelve_bit_nuclei(seed=4, size=61)
    as_rgb = to_rgb_uint8(np.stack([frame] * 3, axis=2), PERCENTILE)
    np.testing.assert_array_equal(as_rgb, to_rgb_uint8(frame, PERCENTILE))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100, 1001, 4096])
def test_percentiles_are_numpy_s_inverted_cdf(size):
    from mrcnn.intensity import _percentiles

    values = np.random.default_rng(size).integers(0, 4096, size).astype(np.uint16)
    counts = np.bincount(values, minlength=65536)
    for pair in [(0.0, 100.0), (1.0, 99.8), (0.5, 99.5), (33.3, 50.0), (0.01, 99.99)]:
        assert _percentiles(counts, pair) == tuple(
            np.percentile(values, pair, method="inverted_cdf")
        )


def test_alpha_is_dropped_before_anything_is_measured():
    rgb = np.stack([twelve_bit_nuclei(seed=s) for s in range(3)], axis=2)
    alpha = np.full(rgb.shape[:2], 65535, np.uint16)
    alpha[:10] = 0
    for normalization in (Normalization(), PERCENTILE):
        with_alpha = to_rgb_uint8(np.dstack([rgb, alpha]), normalization)
        np.testing.assert_array_equal(with_alpha, to_rgb_uint8(rgb, normalization))
        grey_alpha = to_rgb_uint8(np.dstack([rgb[..., 0], alpha]), normalization)
        np.testing.assert_array_equal(grey_alpha, to_rgb_uint8(rgb[..., 0], normalization))


def test_scale_is_today_s_map():
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.clip(np.round(levels / 257.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(levels)[..., 1], expected)
    rgb8 = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgb8), rgb8)
    bits = np.array([[True, False]])
    assert to_rgb_uint8(bits)[0, :, 0].tolist() == [255, 0]


def test_percentile_of_8_bit_images_and_min_max():
    values = np.random.default_rng(4).integers(60, 181, (40, 50), dtype=np.uint8)
    np.testing.assert_array_equal(
        to_rgb_uint8(values, Normalization("percentile", (2, 98)))[..., 0],
        reference_stretch(values, 2, 98),
    )
    minmax = to_rgb_uint8(values, Normalization("percentile", (0, 100)))[..., 0]
    assert minmax.min() == 0 and minmax.max() == 255
    assert minmax[values == values.max()].min() == 255


def test_a_frame_without_objects_is_stretched_too():
    background = np.random.default_rng(5).normal(100, 3, (50, 50)).round().astype(np.uint16)
    stretched = to_rgb_uint8(background, PERCENTILE)
    assert stretched.min() == 0 and stretched.max() == 255  # its noise fills the range


def test_no_spread_between_the_percentiles_thresholds_there():
    flat = np.full((20, 20), 700, np.uint16)
    assert to_rgb_uint8(flat, PERCENTILE).max() == 0
    flat[0, 0] = 4000  # 1 pixel in 400: above the 99.8th percentile, which is still 700
    stretched = to_rgb_uint8(flat, PERCENTILE)
    assert stretched[0, 0, 0] == 255 and stretched[1:, 1:].max() == 0


@pytest.mark.parametrize(
    "image",
    [
        np.ones((4, 4), np.float32),
        np.ones((4, 4), np.int32),
        np.ones((4, 4, 5), np.uint8),
        np.ones((0, 4), np.uint8),
    ],
)
def test_other_arrays_are_refused(image):
    with pytest.raises(ValueError, match="image"):
        to_rgb_uint8(image)


# ------------------------------------------------------------------ the Config settings
def test_the_default_keeps_today_s_scale():
    config = Config(NAME="x", NUM_CLASSES=2)
    assert config.INTENSITY_NORMALIZATION == "scale"
    assert Normalization.from_config(config) == Normalization()


def test_a_percentile_config_round_trips_through_its_dict_and_json():
    config = Config(
        NAME="x",
        NUM_CLASSES=2,
        INTENSITY_NORMALIZATION="percentile",
        NORMALIZATION_PERCENTILES=(0.5, 99.5),
    )
    stored = json.loads(config.to_json())
    assert stored["INTENSITY_NORMALIZATION"] == "percentile"
    assert stored["NORMALIZATION_PERCENTILES"] == [0.5, 99.5]
    again = Config.from_dict(stored)
    assert again.to_dict() == config.to_dict()
    assert Normalization.from_config(again) == Normalization("percentile", (0.5, 99.5))


def test_a_config_stored_before_these_settings_reads_as_scale():
    stored = Config(NAME="x", NUM_CLASSES=2).to_dict()
    del stored["INTENSITY_NORMALIZATION"], stored["NORMALIZATION_PERCENTILES"]
    assert Normalization.from_config(Config.from_dict(stored)) == Normalization()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"INTENSITY_NORMALIZATION": "minmax"},
            r"INTENSITY_NORMALIZATION must be one of \('scale', 'percentile'\), got 'minmax'",
        ),
        ({"INTENSITY_NORMALIZATION": None}, "INTENSITY_NORMALIZATION must be one of"),
        (
            {"NORMALIZATION_PERCENTILES": (99.8, 1.0)},
            r"NORMALIZATION_PERCENTILES must be two numbers \(low, high\) "
            r"with 0 <= low < high <= 100, got \(99.8, 1.0\)",
        ),
        ({"NORMALIZATION_PERCENTILES": (5, 5)}, "NORMALIZATION_PERCENTILES must be two numbers"),
        ({"NORMALIZATION_PERCENTILES": (-1, 99)}, "NORMALIZATION_PERCENTILES must be two numbers"),
        ({"NORMALIZATION_PERCENTILES": (1, 101)}, "NORMALIZATION_PERCENTILES must be two numbers"),
        ({"NORMALIZATION_PERCENTILES": (1, 50, 99)}, "NORMALIZATION_PERCENTILES must be two"),
        ({"NORMALIZATION_PERCENTILES": 99.8}, "NORMALIZATION_PERCENTILES must be two numbers"),
        ({"NORMALIZATION_PERCENTILES": "1,99"}, "NORMALIZATION_PERCENTILES must be two numbers"),
        ({"NORMALIZATION_PERCENTILES": (True, 99)}, "NORMALIZATION_PERCENTILES must be two"),
        ({"NORMALIZATION_PERCENTILES": (1, float("nan"))}, "NORMALIZATION_PERCENTILES must be"),
    ],
)
def test_bad_settings_are_refused_naming_them(settings, message):
    with pytest.raises(ValueError, match=message):
        Config(NAME="x", NUM_CLASSES=2, **settings)


def test_a_stored_config_with_a_bad_setting_names_its_source():
    stored = {**Config(NAME="x", NUM_CLASSES=2).to_dict(), "INTENSITY_NORMALIZATION": "zscore"}
    with pytest.raises(ValueError, match="^model.json: INTENSITY_NORMALIZATION must be one of"):
        Config.from_dict(stored, source="model.json")
