"""Decoding image bytes: every supported mode becomes RGB uint8, every bad kind its error_type."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tasks.inference.image_decoding import ERROR_TYPES, ImageDecodeError, decode_image

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def error_of(data: bytes, **kwargs) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, "s3://b/x.png", **kwargs)
    assert "s3://b/x.png" in str(caught.value)
    return caught.value


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_rgb_formats_round_trip(fmt: str):
    options = {"lossless": True} if fmt == "WEBP" else {}
    image = decode_image(encoded(Image.fromarray(PIXELS), fmt, **options))
    assert image.dtype == np.uint8 and image.shape == (12, 20, 3)
    np.testing.assert_array_equal(image, PIXELS)


def test_grayscale_is_repeated_to_three_channels():
    gray = PIXELS[..., 0]
    image = decode_image(encoded(Image.fromarray(gray), "PNG"))
    assert image.shape == (12, 20, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_rgba_drops_alpha_like_the_training_reader():
    rgba = np.dstack([PIXELS, np.full((12, 20), 7, np.uint8)])
    np.testing.assert_array_equal(decode_image(encoded(Image.fromarray(rgba), "PNG")), PIXELS)


def test_palette_is_expanded():
    palette = Image.new("P", (3, 2))
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 128, 255] + [0] * 759)
    palette.putdata([0, 1, 2, 2, 1, 0])
    image = decode_image(encoded(palette, "PNG"))
    assert image[0].tolist() == [[0, 0, 0], [255, 0, 0], [0, 128, 255]]


def test_sixteen_bit_gray_is_scaled_by_1_over_257():
    values = np.array([[0, 128, 129, 257 * 100, 65535]], np.uint16)
    image = decode_image(encoded(Image.fromarray(values), "PNG"))
    # 128 / 257 = 0.498 -> 0, 129 / 257 = 0.502 -> 1
    assert image[0, :, 0].tolist() == [0, 0, 1, 100, 255]
    assert (image[..., 0] == image[..., 2]).all()


def test_cmyk_is_converted():
    cyan = Image.new("CMYK", (4, 3), (255, 0, 0, 0))
    assert decode_image(encoded(cyan, "TIFF"))[0, 0].tolist() == [0, 255, 255]
    assert np.abs(decode_image(encoded(cyan, "JPEG")).astype(int) - [0, 255, 255]).max() < 8


def test_exif_orientation_is_applied_before_anything_else():
    # Stored 40 wide x 20 high, left half red; orientation 6 = rotate 90 degrees clockwise.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode_image(encoded(Image.fromarray(stored), "JPEG", exif=exif, quality=95))
    assert image.shape == (40, 20, 3)
    assert image[5, 10, 0] > 200 and image[35, 10, 0] < 50  # the red half is now on top


def test_zero_bytes_is_an_empty_file():
    assert error_of(b"").error_type == "empty_file"


def test_text_with_an_image_extension_is_not_an_image():
    error = error_of(b"name,score\ncar,0.9\n")
    assert error.error_type == "not_an_image" and "not an image" in str(error)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF"])
def test_a_file_cut_in_half_is_truncated(fmt: str):
    data = encoded(Image.fromarray(PIXELS), fmt)
    assert error_of(data[: len(data) // 2]).error_type == "truncated"


def test_damaged_pixel_data_is_corrupt():
    data = bytearray(encoded(Image.fromarray(PIXELS), "PNG"))
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = bytes(b ^ 0xFF for b in data[start : start + 40])
    assert error_of(bytes(data)).error_type == "corrupt"


def test_an_image_signature_with_a_damaged_header_is_corrupt_not_a_foreign_file():
    bad_ihdr = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 30
    assert error_of(bad_ihdr).error_type == "corrupt"
    assert error_of(b"II*\x00" + b"\xff" * 40).error_type == "corrupt"


def test_more_pixels_than_the_limit_is_too_large():
    data = encoded(Image.fromarray(PIXELS), "PNG")
    assert decode_image(data, max_pixels=240).shape == (12, 20, 3)
    error = error_of(data, max_pixels=239)
    assert error.error_type == "too_large" and "240" in str(error)


def test_a_decompression_bomb_is_refused_from_its_header():
    # 100,000 x 100,000 gray pixels declared in 60 bytes: never decoded.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )
    assert error_of(bomb).error_type == "too_large"


@pytest.mark.parametrize(("mode", "named"), [("F", "float32 pixels"), ("LAB", "'LAB'")])
def test_modes_without_a_faithful_rgb_rendering_are_unsupported(mode: str, named: str):
    error = error_of(encoded(Image.new(mode, (4, 3)), "TIFF"))
    assert error.error_type == "unsupported_mode" and named in str(error)


def test_error_types_are_the_documented_set():
    assert ERROR_TYPES == (
        "empty_file",
        "not_an_image",
        "truncated",
        "corrupt",
        "too_large",
        "unsupported_mode",
    )
    with pytest.raises(ValueError, match="unknown error_type"):
        ImageDecodeError("broken", "x")
