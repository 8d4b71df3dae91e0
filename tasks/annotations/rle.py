"""COCO compressed run-length encoding of bool masks, as JSON-able dicts and as strings.

A mask ``[H, W]`` becomes ``{"size": [H, W], "counts": "<ascii>"}`` (pycocotools' column-major
compressed form, what COCO files and ``COCO.loadRes`` take). The ``instances`` table stores the
same thing as one JSON string per row, so a query can hand it to any COCO tool unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """bool ``[H, W]`` -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO compressed RLE (``counts`` as str or bytes) -> bool ``[H, W]``."""
    counts = rle["counts"]
    encoded = {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return mask_utils.decode(encoded).astype(bool)


def rle_string(mask: np.ndarray) -> str:
    """A mask as the compact JSON text stored in ``instances.mask_rle``."""
    return json.dumps(encode_rle(mask), separators=(",", ":"))


def mask_from_string(text: str) -> np.ndarray:
    """Inverse of :func:`rle_string`.

    Raises:
        ValueError: the text is not such an RLE.
    """
    try:
        rle = json.loads(text)
        return decode_rle(rle)
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"not a COCO RLE string: {text[:60]!r} ({error})") from None
