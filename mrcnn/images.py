"""Image files as arrays: the one decoder of the converter, training, evaluation and inference.

`read_image` turns a file (bytes or a path) into its pixels ``[H, W, C]`` in the file's own
type (bool, uint8 or uint16) and channels (1 grey, 2 grey and alpha, 3 RGB, 4 RGBA), turned
upright by its EXIF orientation; `mrcnn.intensity` then makes the model's RGB uint8 of it.

- TIFF (grey or RGB, chunky or planar) is read with tifffile. Compressions tifffile decodes only
  with the optional ``imagecodecs`` package (LZW, JPEG, ...) and the photometric kinds it leaves
  uninterpreted (palette, white-is-zero, CMYK, YCbCr, Lab) are read with Pillow.
- Every other format (PNG, JPEG, BMP, WebP, GIF, ...) is read with Pillow. Palettes are
  expanded, CMYK and YCbCr converted to RGB. 16-bit colour PNGs, of which Pillow keeps only
  the high byte, are read at their full 16 bits.
- Refused, with the reason: stacks of planes (z, time, or channels stored as pages), float,
  signed or 32-bit pixels, Lab or HSV, more than four channels, more pixels than a limit
  (decompression bombs; checked from the header, before any pixel is decoded).
- The EXIF orientation tag is applied as ``PIL.ImageOps.exif_transpose`` applies it, so that
  masks drawn on the picture as people see it fit. A TIFF's Orientation tag is not applied,
  here or by the converter (tifffile does not apply it either).

Every refusal is an `UnreadableImage` whose ``reason`` says what kind of bad it is (batch
inference records it): ``empty_file``, ``not_an_image``, ``truncated``, ``corrupt``,
``too_large``, ``unsupported_mode``.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import tifffile
from PIL import ExifTags

from mrcnn.errors import InvalidInput, MissingInput

REASONS = ("empty_file", "not_an_image", "truncated", "corrupt", "too_large", "unsupported_mode")
MAX_PIXELS = 100_000_000  # 10,000 x 10,000: far above camera images, far below a bomb
IMAGE_DTYPES = (np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.uint16))
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
# Leading bytes of the other formats Pillow reads for us; a file that starts like one of
# them but does not open is corrupt rather than something else.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF8", *TIFF_SIGNATURES)

# Pillow modes whose array is already an image of ours, and the conversion of the others.
_ARRAY_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I;16N"})
_CONVERSIONS = {
    "La": "LA",
    "PA": "RGBA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
}
# 16-bit colour PNG: Pillow's raw mode for the high bytes -> the one that reads the low bytes.
_LOW_BYTES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}
_TIFF_COLOUR_PHOTOMETRICS = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)


class UnreadableImage(InvalidInput):
    """A file the reader refuses. The message names the file; ``reason`` is one of `REASONS`.

    Attributes:
        reason: what kind of bad the file is.
        why: the cause in a few words, without the file's name.
    """

    def __init__(self, reason: str, name: str, why: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}; expected one of {REASONS}")
        # A refused pixel type reads as a fact about the file; the others as a failure.
        message = (
            f"{name} {why}"
            if reason == "unsupported_mode"
            else f"{name} is not a readable image ({why})"
        )
        super().__init__(message)
        self.reason = reason
        self.why = why


@dataclass(frozen=True)
class StoredImage:
    """An image as its file stores it, before the EXIF turn.

    Attributes:
        pixels: ``[H, W, C]`` bool, uint8 or uint16; C is 1 to 4 (grey, grey and alpha, RGB,
            RGBA).
        orientation: the EXIF orientation tag, 1 (as stored) to 8.
    """

    pixels: np.ndarray
    orientation: int

    @property
    def upright(self) -> np.ndarray:
        """The pixels turned as the orientation tag says (a view, not a copy)."""
        return turn_upright(self.pixels, self.orientation)


def read_image(
    source: bytes | str | os.PathLike, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """An image file's pixels ``[H, W, C]`` in its own type, turned upright.

    Args:
        source: the file's bytes, or its path.
        name: how errors name the file (default: the path, or ``"image"`` for bytes).
        max_pixels: the largest accepted height x width.

    Returns:
        bool, uint8 or uint16 ``[H, W, C]``, C = 1 (grey), 2 (grey and alpha), 3 (RGB) or 4
        (RGBA).

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        UnreadableImage: a file the reader refuses (see the module docstring).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise MissingInput(f"image file not found: {path}")
        name = str(path) if name is None else name
        source = path.read_bytes()
    return decode_image(source, name or "image", max_pixels).upright


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> StoredImage:
    """Decode an image file into its pixels as stored and its orientation tag.

    Raises:
        UnreadableImage: see the module docstring.
    """
    pixels, orientation = _decode(data, name, max_pixels, colour=True)
    if pixels.dtype not in IMAGE_DTYPES:
        raise UnreadableImage(
            "unsupported_mode",
            name,
            f"has {pixels.dtype} pixels; images must be 8- or 16-bit unsigned integers",
        )
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or not 1 <= pixels.shape[2] <= 4:
        raise UnreadableImage(
            "unsupported_mode",
            name,
            f"has pixels of shape "
            f"{list(pixels.shape)}; images have 1 to 4 channels (grey, grey "
            "and alpha, RGB, RGBA)",
        )
    # Native byte order (Pillow gives big-endian 16-bit grey as such) and a writable array
    # (Pillow's are read-only views of its buffer): copied only when needed.
    pixels = np.require(pixels, pixels.dtype.newbyteorder("="), requirements="W")
    return StoredImage(pixels, orientation)


def decode_pixels(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The samples a file stores, ``[H, W]`` or ``[H, W, C]`` of any type, as stored: palette
    indices are not expanded, no orientation is applied. Label images and masks are read so.

    Raises:
        UnreadableImage: empty, unknown, truncated, corrupt, too large, or a stack of planes.
    """
    return _decode(data, name, max_pixels, colour=False)[0]


def is_tiff(data: bytes) -> bool:
    """Whether the bytes start like a TIFF file."""
    return data[:4] in TIFF_SIGNATURES


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1 to 8) `read_image` applies: 1 for a TIFF, for a file
    without the tag and for a file Pillow cannot open."""
    if is_tiff(data):
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PIL.Image.open(io.BytesIO(data)) as image:
                return _orientation(image)
    except (OSError, SyntaxError, ValueError):
        return 1


def turn_upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels ``[H, W, ...]`` stored under EXIF ``orientation`` as
    ``PIL.ImageOps.exif_transpose`` turns the image (e.g. a mask drawn on the stored grid)."""
    return _TURNS[orientation](array)


def _decode(data: bytes, name: str, max_pixels: int, colour: bool) -> tuple[np.ndarray, int]:
    """``(pixels, orientation)``; ``colour``: interpret the samples as colours (palettes,
    CMYK, ...) rather than keep them as stored."""
    if len(data) == 0:
        raise UnreadableImage("empty_file", name, "the file is empty, 0 bytes")
    if not is_tiff(data):
        return _pillow(data, name, max_pixels, colour)
    pixels = _tiff(data, name, max_pixels, colour)
    if pixels is None:
        pixels, _ = _pillow(data, name, max_pixels, colour)
    return pixels, 1  # a TIFF's Orientation tag is not applied (module docstring)


def _tiff(data: bytes, name: str, max_pixels: int, colour: bool) -> np.ndarray | None:
    """A TIFF's first series through tifffile, channels last; None: Pillow is to read it."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            if not tiff.series:
                raise UnreadableImage("corrupt", name, "no image in the TIFF file")
            series = tiff.series[0]
            if series.axes not in ("YX", "YXS", "SYX"):
                raise UnreadableImage(
                    "unsupported_mode",
                    name,
                    "is a stack of planes, axes "
                    f"{series.axes} shape {list(series.shape)}; one 2-D "
                    "image is read",
                )
            if colour and series.keyframe.photometric not in _TIFF_COLOUR_PHOTOMETRICS:
                return None  # palette, white-is-zero, CMYK...: Pillow knows their colours
            height, width = (size for size, axis in zip(series.shape, series.axes) if axis != "S")
            _check_size(height, width, name, max_pixels)
            stored, axes = series.dtype, series.axes
            compression = series.keyframe.compression.name
            try:
                pixels = series.asarray()
            except ValueError as error:
                if "imagecodecs" not in str(error):
                    raise
                pixels = None
    except UnreadableImage:
        raise
    except (
        OSError,
        ValueError,
        IndexError,
        KeyError,
        EOFError,
        tifffile.TiffFileError,
        np.exceptions.AxisError,
    ) as error:
        raise _failure(error, name) from None
    if pixels is None:
        return _tiff_through_pillow(data, name, max_pixels, colour, stored, compression)
    return np.moveaxis(pixels, 0, -1) if axes == "SYX" else pixels


def _tiff_through_pillow(
    data: bytes, name: str, max_pixels: int, colour: bool, stored: np.dtype, compression: str
) -> np.ndarray:
    """A TIFF whose compression tifffile cannot decode here, read by Pillow's libtiff."""
    pixels, _ = _pillow(data, name, max_pixels, colour)
    if pixels.dtype.itemsize < np.dtype(stored).itemsize:  # 16-bit RGB: Pillow keeps 8 bits
        raise UnreadableImage(
            "unsupported_mode",
            name,
            f"has {stored} colour pixels compressed "
            f"with {compression}, which tifffile decodes only with the "
            "imagecodecs package and Pillow only to 8 bits; save it "
            "uncompressed or with Deflate",
        )
    return pixels


def _pillow(data: bytes, name: str, max_pixels: int, colour: bool) -> tuple[np.ndarray, int]:
    with warnings.catch_warnings():
        # `max_pixels` replaces Pillow's bomb warning; corrupt EXIF only warns, and is ignored.
        warnings.simplefilter("ignore")
        try:
            image = PIL.Image.open(io.BytesIO(data))
        except PIL.Image.DecompressionBombError as error:
            raise UnreadableImage("too_large", name, str(error)) from None
        except PIL.UnidentifiedImageError:
            if data.startswith(_SIGNATURES) or _is_webp(data):
                raise UnreadableImage(
                    "corrupt", name, f"the image header is damaged or cut short, {len(data)} bytes"
                ) from None
            raise UnreadableImage(
                "not_an_image", name, "not an image file Pillow or tifffile knows"
            ) from None
        except Exception as error:  # a malformed header can raise anything from the parser
            raise _failure(error, name) from None
        with image:
            _check_size(image.height, image.width, name, max_pixels)
            try:
                pixels = _sixteen_bit_colour_png(data, image)
                if pixels is None:
                    image.load()
                    pixels = _pillow_array(image, name) if colour else np.asarray(image)
            except UnreadableImage:
                raise
            except Exception as error:  # decoders raise OSError, SyntaxError, struct.error...
                raise _failure(error, name) from None
            return pixels, _orientation(image)


def _pillow_array(image: PIL.Image.Image, name: str) -> np.ndarray:
    """A loaded Pillow image as one of our arrays; refuses modes without an RGB rendering."""
    mode = image.mode
    if mode == "P":
        return np.asarray(image.convert("RGBA" if "transparency" in image.info else "RGB"))
    if mode in _CONVERSIONS:
        return np.asarray(image.convert(_CONVERSIONS[mode]))
    if mode in _ARRAY_MODES:
        return np.asarray(image)
    if mode == "I":  # 32-bit integers, as some formats hold 16-bit grey
        pixels = np.asarray(image)
        if pixels.size and 0 <= pixels.min() and pixels.max() <= 65535:
            return pixels.astype(np.uint16)
    raise UnreadableImage(
        "unsupported_mode",
        name,
        f"has pixel mode {mode!r}, which has no "
        "8- or 16-bit rendering (float, signed, 32-bit, Lab or HSV pixels)",
    )


def _sixteen_bit_colour_png(data: bytes, image: PIL.Image.Image) -> np.ndarray | None:
    """A 16-bit RGB(A) or grey-and-alpha PNG at full depth; None for any other image.

    Pillow has no 16-bit colour modes and unpacks such a PNG's high bytes only. Its PNG
    decoder reads the low bytes when asked for the little-endian raw mode (for grey and
    alpha, the raw bytes as four 8-bit samples), so a second decode gives them.
    """
    if image.format != "PNG" or len(image.tile) != 1:
        return None
    tile = image.tile[0]
    rawmode = tile.args  # Pillow's PNG tile holds the raw mode alone
    if not isinstance(rawmode, str) or rawmode not in (*_LOW_BYTES, "LA;16B"):
        return None
    with PIL.Image.open(io.BytesIO(data)) as low:
        low.tile = [tile._replace(args=_LOW_BYTES.get(rawmode, "RGBA"))]
        low.load()
        low_bytes = np.asarray(low).astype(np.uint16)
    if rawmode == "LA;16B":  # the raw bytes: grey high, grey low, alpha high, alpha low
        return low_bytes[..., 0::2] * 256 + low_bytes[..., 1::2]
    image.load()
    return np.asarray(image).astype(np.uint16) * 256 + low_bytes


def _orientation(image: PIL.Image.Image) -> int:
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a damaged EXIF block: Pillow's parser raises anything
        return 1
    return orientation if orientation in _TURNS else 1


def _check_size(height: int, width: int, name: str, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise UnreadableImage(
            "too_large",
            name,
            f"{width}x{height} = {height * width} pixels, more than the limit of {max_pixels}",
        )


def _failure(error: BaseException, name: str) -> UnreadableImage:
    """A decoder's exception as ``truncated`` or ``corrupt``, in one line that names no
    memory address (reports stay the same bytes from run to run)."""
    text = " ".join(str(error).split()) or type(error).__name__
    cut = isinstance(error, EOFError) or any(
        words in text.lower() for words in ("truncated", "failed to read", "end of file")
    )
    return UnreadableImage("truncated" if cut else "corrupt", name, text)


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


# EXIF orientation (tag 0x0112) -> the turn PIL.ImageOps.exif_transpose applies to show the
# image upright; rows are axis 0, columns axis 1.
_TURNS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
