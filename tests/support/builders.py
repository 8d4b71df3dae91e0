"""Tiny annotation files and images that tests write themselves."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import tifffile


def image_bytes(
    height: int, width: int, fmt: str = "PNG", seed: int = 0, exif_orientation: int | None = None
) -> bytes:
    """A deterministic RGB image ``[height, width]`` encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(pixels)
    buffer = io.BytesIO()
    if exif_orientation is not None:
        exif = PIL.Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buffer, format=fmt, exif=exif.tobytes())
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_of(array: np.ndarray) -> bytes:
    """PNG bytes of a 2-D array (uint8, uint16 or bool)."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def tiff_of(array: np.ndarray, **options: Any) -> bytes:
    """TIFF bytes of an array, written by tifffile (``options`` go to ``tifffile.imwrite``)."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def image_file(array: np.ndarray, fmt: str, **options: Any) -> bytes:
    """An array (grey, RGB or RGBA; 8 or 16-bit) encoded by Pillow as ``fmt``."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    """Write a file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def shape(
    label: str,
    points: list[list[float]],
    shape_type: str | None = "polygon",
    group_id: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One labelme shape (``shape_type=None`` omits the key, as labelme 3.x files do)."""
    entry: dict[str, Any] = {"label": label, "points": points, "group_id": group_id}
    if shape_type is not None:
        entry["shape_type"] = shape_type
    entry.update(extra)
    return entry


def mask_shape(
    label: str, x: int, y: int, bitmap: np.ndarray, group_id: int | None = None
) -> dict[str, Any]:
    """A labelme ``mask`` shape: ``bitmap`` bool ``[h, w]`` with top-left pixel ``(x, y)``."""
    h, w = bitmap.shape
    encoded = base64.b64encode(png_of(bitmap.astype(np.uint8) * 255)).decode("ascii")
    return shape(label, [[x, y], [x + w - 1, y + h - 1]], "mask", group_id, mask=encoded)


def labelme_json(
    image_path: str | None,
    height: int | None,
    width: int | None,
    shapes: list[dict[str, Any]],
    image_data: bytes | None = None,
    version: str = "5.4.1",
) -> bytes:
    """A labelme file's bytes."""
    document = {
        "version": version,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode("ascii") if image_data else None,
        "imageHeight": height,
        "imageWidth": width,
    }
    return json.dumps(document).encode("utf-8")


def write_labelme_folder(root: Path) -> dict[str, Any]:
    """A small labelme folder with good and bad files; returns what it expects.

    Good: ``a.json`` (two polygons of one group, a rectangle, an ``__ignore__`` shape),
    ``sub/b.json`` (circle + point, image in ``sub/img/``), ``c.json`` (embedded image).
    Bad: ``broken.json`` (malformed), ``missing.json`` (image missing), ``escape.json``
    (``imagePath`` leaves the root), ``a_copy.json`` (``a.png`` again: a duplicate name),
    ``d.json`` (a polygon of 2 points: dropped).
    """
    write(root / "a.png", image_bytes(30, 40, seed=1))
    write(
        root / "a.json",
        labelme_json(
            "a.png",
            30,
            40,
            [
                shape("cat", [[2, 2], [10, 2], [10, 10]], group_id=1),
                shape("cat", [[20, 20], [30, 20], [30, 28]], group_id=1),
                shape("dog", [[12, 3], [18, 9]], "rectangle"),
                shape("__ignore__", [[0, 0], [5, 0], [5, 5]]),
            ],
        ),
    )
    write(root / "sub/img/b.jpg", image_bytes(24, 32, fmt="JPEG", seed=2))
    write(
        root / "sub/b.json",
        labelme_json(
            "img/b.jpg",
            24,
            32,
            [
                shape("dog", [[16, 12], [16, 18]], "circle"),
                shape("cat", [[5, 5]], "point"),
            ],
        ),
    )
    write(
        root / "c.json",
        labelme_json(
            "c.png",
            20,
            20,
            [shape("cat", [[1, 1], [8, 1], [8, 8]])],
            image_data=image_bytes(20, 20, seed=3),
        ),
    )
    write(root / "d.png", image_bytes(16, 16, seed=4))
    write(
        root / "d.json",
        labelme_json(
            "d.png",
            16,
            16,
            [shape("dog", [[1, 1], [5, 5]]), shape("dog", [[1, 1], [9, 1], [9, 9]])],
        ),
    )
    write(root / "broken.json", '{"shapes": [')
    write(root / "missing.json", labelme_json("nowhere.png", 10, 10, []))
    write(root / "escape.json", labelme_json("../../etc/passwd", 10, 10, []))
    write(
        root / "a_copy.json",
        labelme_json("a.png", 30, 40, [shape("dog", [[1, 1], [9, 1], [9, 9]])]),
    )
    return {
        "found": 8,
        "converted": 4,
        "skipped": 4,
        "dropped": 1,
        "instances": {"cat": 3, "dog": 3},
    }
