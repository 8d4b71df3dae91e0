"""Image files Pillow and tifffile cannot write here: 16-bit colour PNG, LZW-compressed TIFF."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import tifffile

_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey+alpha, RGB, RGBA


def png_of_any(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 or uint16 ``[H, W]`` or ``[H, W, C]`` array (C of 1 to 4).

    Rows use the five PNG filters in turn (none, sub, up, average, Paeth), so a decoder's
    every unfiltering path is exercised.
    """
    array = np.asarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2]
    depth = 8 * array.dtype.itemsize
    rows = array.reshape(array.shape[0], -1).astype(f">u{array.dtype.itemsize}")
    raw = rows.view(np.uint8).reshape(array.shape[0], -1).astype(np.int16)
    step = channels * array.dtype.itemsize  # bytes per pixel: what the filters look back by
    previous = np.zeros_like(raw[0])
    body = b""
    for index, row in enumerate(raw):
        kind = index % 5
        left = np.concatenate([np.zeros(step, np.int16), row[:-step]])
        up_left = np.concatenate([np.zeros(step, np.int16), previous[:-step]])
        body += (
            bytes([kind])
            + (_filtered(kind, row, left, previous, up_left) % 256).astype(np.uint8).tobytes()
        )
        previous = row
    header = struct.pack(
        ">IIBBBBB", array.shape[1], array.shape[0], depth, _PNG_COLOUR_TYPES[channels], 0, 0, 0
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(body))
        + _chunk(b"IEND", b"")
    )


def lzw_tiff_of(array: np.ndarray, **options) -> bytes:
    """TIFF bytes of an array in one LZW-compressed strip (tifffile writes LZW only with the
    ``imagecodecs`` package): written uncompressed, then the strip replaced and the tags set."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, rowsperstrip=array.shape[0], **options)
    packed, offset = _lzw_literals(np.ascontiguousarray(array).tobytes()), buffer.seek(0, 2)
    buffer.write(packed)
    buffer.seek(0)
    with tifffile.TiffFile(buffer, mode="r+b") as tiff:
        tags = tiff.pages[0].tags
        tags["StripOffsets"].overwrite([offset])
        tags["StripByteCounts"].overwrite([len(packed)])
        tags["Compression"].overwrite(tifffile.COMPRESSION.LZW)
    return buffer.getvalue()


def _filtered(
    kind: int, row: np.ndarray, left: np.ndarray, up: np.ndarray, up_left: np.ndarray
) -> np.ndarray:
    if kind == 0:
        return row
    if kind == 1:
        return row - left
    if kind == 2:
        return row - up
    if kind == 3:
        return row - (left + up) // 2
    estimate = left + up - up_left
    to_left, to_up, to_up_left = (np.abs(estimate - v) for v in (left, up, up_left))
    paeth = np.where(
        (to_left <= to_up) & (to_left <= to_up_left),
        left,
        np.where(to_up <= to_up_left, up, up_left),
    )
    return row - paeth


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _lzw_literals(data: bytes) -> bytes:
    """A valid TIFF LZW stream of ``data`` made of literal codes only: a Clear code every 250
    bytes keeps every code 9 bits wide (no compression, no dictionary to build)."""
    codes = []
    for start in range(0, len(data), 250):
        codes.append(256)  # Clear
        codes.extend(data[start : start + 250])
    codes.append(257)  # End of information
    bits = "".join(format(code, "09b") for code in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")
