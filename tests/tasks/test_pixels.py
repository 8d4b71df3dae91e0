"""Image files as pixel arrays: TIFF through tifffile (and Pillow for LZW), label images,
binary masks, instance crops, EXIF turns, and which images the converter accepts."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

from tasks.annotations import pixels
from tasks.annotations.images import exif_orientation, image_size, turn_upright
from tasks.annotations.pixels import crop, decode_pixels, label_crops, label_pixels, mask_pixels
from tests.support.builders import image_file, png_of, tiff_of

RNG = np.random.default_rng(7)
GREY16 = RNG.integers(0, 65536, size=(9, 13), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, size=(9, 13, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (tiff_of(GREY16), GREY16),
        (tiff_of(GREY16, compression="zlib"), GREY16),
        (tiff_of(RGB8, photometric="rgb"), RGB8),
        (tiff_of(np.moveaxis(RGB8, -1, 0), photometric="rgb", planarconfig="separate"), RGB8),
        (tiff_of(GREY16.astype(np.uint32) * 1000), GREY16.astype(np.uint32) * 1000),
        (image_file(GREY16, "TIFF", compression="tiff_lzw"), GREY16),  # tifffile needs imagecodecs
        (png_of(GREY16), GREY16),
        (image_file(RGB8, "PNG"), RGB8),
    ],
)
def test_tiff_and_png_decode_to_their_own_pixels(data, expected):
    decoded = decode_pixels(data, "'a'")
    assert decoded.dtype == expected.dtype
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"II*\x00" + b"\x00" * 12, "'a.tif' is not a readable image"),
        (tiff_of(GREY16)[:200], "'a.tif' is not a readable image"),
        (tiff_of(np.zeros((5, 8, 8), np.uint8)), "a stack of planes, axes"),
        (b"not an image", "'a.tif' is not a readable image"),
    ],
)
def test_unreadable_files_say_so(data, message):
    with pytest.raises(ValueError, match=message):
        decode_pixels(data, "'a.tif'")


def test_a_tiff_larger_than_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(pixels, "MAX_PIXELS", 100)
    with pytest.raises(ValueError, match="117 pixels, more than the limit of 100"):
        decode_pixels(tiff_of(GREY16), "'a.tif'")


@pytest.mark.parametrize(
    ("encode", "dtype"),
    [
        (png_of, np.uint8),
        (png_of, np.uint16),
        (tiff_of, np.uint8),
        (tiff_of, np.uint16),
        (tiff_of, np.int32),
        (tiff_of, np.uint32),
    ],
)
def test_label_images_of_8_16_and_32_bits(encode, dtype):
    labels = np.zeros((6, 7), dtype)
    labels[1:3, 1:4] = 1
    labels[4, 2:6] = np.iinfo(dtype).max if dtype != np.int32 else 70_000
    decoded = label_pixels(encode(labels), "x")
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, labels.astype(np.int64))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tiff_of(np.full((4, 4), -3, np.int16)), r"label image has negative values \(x\)"),
        (tiff_of(np.ones((4, 4), np.float32)), "label image must be one channel of integers"),
        (image_file(RGB8, "PNG"), "label image must be one channel of integers"),
        (b"junk", "label image is not a readable image"),
    ],
)
def test_bad_label_images(data, message):
    with pytest.raises(ValueError, match=message):
        label_pixels(data, "x")


def test_masks_are_the_non_zero_pixels_of_any_colour_but_alpha():
    inside = np.zeros((5, 6), bool)
    inside[1:4, 2:5] = True
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha is not the mask
    rgba[inside, 1] = 200
    grey_alpha = np.stack([inside * 255, np.full((5, 6), 255)], axis=2).astype(np.uint8)
    for data in (
        png_of(inside.astype(np.uint8) * 255),
        png_of(inside.astype(np.uint8)),
        image_file(rgba, "PNG"),
        image_file(grey_alpha, "PNG"),
        tiff_of(inside.astype(np.uint16) * 40000),
    ):
        np.testing.assert_array_equal(mask_pixels(data, "mask"), inside)


def test_label_crops_are_the_instances_of_each_value():
    labels = RNG.integers(0, 6, size=(40, 50))
    labels[labels == 3] = 0  # a value that does not occur
    sparse = np.where(labels > 0, labels * 1_000_003, 0)  # 32-bit ids far above the pixel count
    for image in (labels, sparse):
        crops = label_crops(image)
        assert [value for value, _, _ in crops] == sorted(set(np.unique(image)) - {0})
        for value, mask, (top, left) in crops:
            full = np.zeros(image.shape, bool)
            full[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
            np.testing.assert_array_equal(full, image == value)
    (only,) = label_crops(np.full((3, 4), 2**31 - 1))
    assert only[0] == 2**31 - 1 and only[1].all() and only[2] == (0, 0)


def test_crop_is_the_bounding_box():
    mask = np.zeros((6, 8), bool)
    mask[2, 3] = mask[4, 6] = True
    cropped, offset = crop(mask)
    assert offset == (2, 3) and cropped.shape == (3, 4) and cropped.sum() == 2
    assert crop(np.zeros((3, 3), bool)) is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_turn_upright_turns_as_pillow_turns_the_image(orientation):
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    PIL.Image.fromarray(RGB8).save(buffer, format="PNG", exif=exif.tobytes())
    data = buffer.getvalue()
    assert exif_orientation(data) == orientation
    with PIL.Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(PIL.ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(turn_upright(RGB8, orientation), expected)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (tiff_of(GREY16), (9, 13)),
        (tiff_of(RGB8, photometric="rgb"), (9, 13)),
        (tiff_of(np.dstack([RGB8, RGB8[..., :1]]), photometric="rgb", extrasamples=[2]), (9, 13)),
        (tiff_of(np.dstack([GREY16, GREY16]), photometric="minisblack", extrasamples=[2]), (9, 13)),
        (tiff_of(np.moveaxis(RGB8, -1, 0), photometric="rgb", planarconfig="separate"), (9, 13)),
        (image_file(GREY16, "TIFF", compression="packbits"), (9, 13)),
        (image_file(GREY16, "TIFF", compression="tiff_lzw"), (9, 13)),
        (png_of(GREY16), (9, 13)),
        (image_file(np.dstack([RGB8, RGB8[..., :1]]), "PNG"), (9, 13)),
    ],
)
def test_converter_accepts_8_and_16_bit_grey_rgb_and_rgba(data, size):
    assert image_size(data, "a") == size
    assert exif_orientation(data) == 1


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint32])
def test_tiff_images_of_other_pixel_types_are_refused(dtype):
    with pytest.raises(
        ValueError,
        match=f"'a.tif' has {np.dtype(dtype)} pixels; images "
        "must be 8- or 16-bit unsigned integers",
    ):
        image_size(tiff_of(np.ones((4, 4), dtype)), "a.tif")
