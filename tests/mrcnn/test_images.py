"""mrcnn.images: every accepted image kind decodes to its own pixels, every refused kind says
why, EXIF turns as Pillow turns, and paths read as bytes do."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

from mrcnn.images import (
    REASONS,
    UnreadableImage,
    decode_image,
    decode_pixels,
    exif_orientation,
    read_image,
)
from tests.support.builders import image_file, png_of, tiff_of
from tests.support.encoders import lzw_tiff_of, png_of_any

RNG = np.random.default_rng(11)
GREY8 = RNG.integers(0, 256, (9, 13), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (9, 13), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (9, 13, 3), dtype=np.uint16)


def channels_last(*planes: np.ndarray) -> np.ndarray:
    return np.stack(planes, axis=2)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_of(GREY8), GREY8[..., None]),
        (png_of(GREY16), GREY16[..., None]),
        (image_file(channels_last(GREY8, GREY8[::-1]), "PNG"), channels_last(GREY8, GREY8[::-1])),
        (image_file(RGB8, "PNG"), RGB8),
        (
            image_file(channels_last(*RGB8.transpose(2, 0, 1), GREY8), "PNG"),
            channels_last(*RGB8.transpose(2, 0, 1), GREY8),
        ),
        # 16-bit colour PNG: Pillow alone keeps only the high bytes of these
        (png_of_any(RGB16), RGB16),
        (
            png_of_any(channels_last(*RGB16.transpose(2, 0, 1), GREY16)),
            channels_last(*RGB16.transpose(2, 0, 1), GREY16),
        ),
        (png_of_any(channels_last(GREY16, GREY16[::-1])), channels_last(GREY16, GREY16[::-1])),
        (tiff_of(GREY8), GREY8[..., None]),
        (tiff_of(GREY16), GREY16[..., None]),
        (tiff_of(RGB16, photometric="rgb"), RGB16),
        (tiff_of(np.moveaxis(RGB16, -1, 0), photometric="rgb", planarconfig="separate"), RGB16),
        (
            tiff_of(channels_last(GREY16, GREY16), photometric="minisblack", extrasamples=[2]),
            channels_last(GREY16, GREY16),
        ),
        (tiff_of(RGB16, photometric="rgb", compression="zlib"), RGB16),
        (lzw_tiff_of(GREY16), GREY16[..., None]),  # tifffile needs imagecodecs: Pillow reads it
        (lzw_tiff_of(RGB8, photometric="rgb"), RGB8),
        (image_file(GREY16, "TIFF", compression="packbits"), GREY16[..., None]),
    ],
)
def test_images_decode_to_their_own_pixels_channels_last(data, expected):
    pixels = read_image(data)
    assert pixels.dtype == expected.dtype and pixels.dtype.isnative and pixels.flags.writeable
    np.testing.assert_array_equal(pixels, expected)


def test_colour_kinds_become_rgb_as_pillow_converts_them():
    palette = PIL.Image.fromarray(RGB8).quantize(16)
    for image in (palette, PIL.Image.fromarray(RGB8).convert("CMYK")):
        for fmt in ("PNG", "TIFF") if image.mode == "P" else ("TIFF", "JPEG"):
            data = _saved(image, fmt)
            with PIL.Image.open(io.BytesIO(data)) as reread:
                expected = np.asarray(reread.convert("RGB"))
            np.testing.assert_array_equal(read_image(data), expected)


def test_palette_indices_stay_indices_for_label_images():
    palette = PIL.Image.fromarray(RGB8).quantize(16)
    np.testing.assert_array_equal(decode_pixels(_saved(palette, "PNG")), np.asarray(palette))


def test_bilevel_images_are_bool():
    inside = GREY8 > 128
    pixels = read_image(_saved(PIL.Image.fromarray(inside), "PNG"))
    assert pixels.dtype == np.bool_
    np.testing.assert_array_equal(pixels[..., 0], inside)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_turns_as_pillow_turns(orientation):
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    data = _saved(PIL.Image.fromarray(RGB8), "PNG", exif=exif.tobytes())
    with PIL.Image.open(io.BytesIO(data)) as image:
        expected = np.asarray(PIL.ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(read_image(data), expected)
    stored = decode_image(data)
    assert stored.orientation == exif_orientation(data) == orientation
    np.testing.assert_array_equal(stored.pixels, RGB8)


def test_tiff_orientation_tags_are_not_applied():
    data = tiff_of(RGB8, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    with PIL.Image.open(io.BytesIO(data)) as image:
        assert image.getexif().get(0x0112) == 6  # Pillow sees the tag; the reader leaves it
    np.testing.assert_array_equal(read_image(data), RGB8)
    assert exif_orientation(data) == 1


@pytest.mark.parametrize(
    ("data", "reason", "message"),
    [
        (b"", "empty_file", r"'x' is not a readable image \(the file is empty, 0 bytes\)"),
        (
            b"name,score\n",
            "not_an_image",
            r"'x' is not a readable image \(not an image file Pillow "
            r"or tifffile knows\)",
        ),
        (png_of(GREY8)[:60], "truncated", "'x' is not a readable image"),
        (tiff_of(GREY16)[:200], "truncated", "'x' is not a readable image"),
        (b"II*\x00" + b"\xff" * 40, "corrupt", "'x' is not a readable image"),
        (
            tiff_of(np.zeros((5, 8, 8), np.uint8)),
            "unsupported_mode",
            r"'x' is a stack of planes, axes \w+ shape \[5, 8, 8\]; one 2-D image is read",
        ),
        (
            tiff_of(np.ones((4, 4), np.float32)),
            "unsupported_mode",
            "'x' has float32 pixels; images must be 8- or 16-bit unsigned integers",
        ),
        (tiff_of(np.ones((4, 4), np.int16)), "unsupported_mode", "'x' has int16 pixels"),
        (tiff_of(np.ones((4, 4), np.uint32)), "unsupported_mode", "'x' has uint32 pixels"),
        (
            tiff_of(np.ones((4, 4, 5), np.uint8), photometric="minisblack", planarconfig="contig"),
            "unsupported_mode",
            r"'x' has pixels of shape \[4, 4, 5\]; images have 1 to 4 channels",
        ),
    ],
)
def test_refusals_say_what_and_why(data, reason, message):
    with pytest.raises(UnreadableImage, match=message) as caught:
        read_image(data, "'x'")
    assert caught.value.reason == reason and reason in REASONS


def test_lab_has_no_rgb_rendering():
    with pytest.raises(UnreadableImage, match="'x' has pixel mode 'LAB'") as caught:
        read_image(_saved(PIL.Image.new("LAB", (4, 3)), "TIFF"), "'x'")
    assert caught.value.reason == "unsupported_mode"


def test_sixteen_bit_colour_compressed_beyond_tifffile_is_refused_not_cut_to_8_bits():
    with pytest.raises(UnreadableImage, match="'x' has uint16 colour pixels compressed with LZW"):
        read_image(lzw_tiff_of(RGB16, photometric="rgb"), "'x'")


def test_the_pixel_limit_is_checked_from_the_header():
    assert read_image(png_of(GREY8), max_pixels=117).shape == (9, 13, 1)
    for data in (png_of(GREY8), tiff_of(GREY8)):
        with pytest.raises(
            UnreadableImage,
            match=r"13x9 = 117 pixels, more than the limit "
            "of 116",
        ) as caught:
            read_image(data, "'x'", max_pixels=116)
        assert caught.value.reason == "too_large"


def test_a_path_reads_as_its_bytes_and_errors_name_it(tmp_path: Path):
    path = tmp_path / "a.tif"
    path.write_bytes(tiff_of(RGB16, photometric="rgb"))
    np.testing.assert_array_equal(read_image(path), RGB16)
    np.testing.assert_array_equal(read_image(str(path)), RGB16)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(UnreadableImage, match=f"{tmp_path / 'junk.png'} is not a readable"):
        read_image(tmp_path / "junk.png")


def _saved(image: PIL.Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
