"""Label Studio JSON exports (a list of tasks) to image records.

Each task ``{id, data, annotations}`` is an item. Of its annotations the newest (by
``updated_at``, then ``created_at``, then ``id``) that is not ``was_cancelled`` is read; a
task without one is skipped, since an unlabelled task is not an image without objects.
Predictions are not read. Each region of its ``result`` is an instance (there are no groups):

* ``polygonlabels``: ``value.points`` ``[[x, y], ...]`` in percent of the image size;
* ``rectanglelabels``: ``value.x, y, width, height`` in percent, ``rotation`` in degrees
  clockwise about the top-left corner, as Label Studio turns it;
* ``brushlabels`` with ``value.format == "rle"``: Label Studio's bit-packed run-length code of
  an RGBA image ``original_height x original_width``; the mask is where alpha > 0.

The class is the first name of the region's ``*labels`` list. Shapes are drawn with labelme's
rasterizer like every other source. Other region types (``keypointlabels``,
``ellipselabels``, ...) are DROPPED issues; results that are not regions (``choices``,
``textarea``, ``relation``, ...) are passed over.

The image is ``data["image"]`` (else the first value of ``data`` with an image suffix). It is
looked up relative to the JSON's folder; the first of these that exists is taken:

1. the path as given: a relative path as is, ``/data/local-files/?d=<path>`` as ``<path>``,
   ``/data/upload/<project>/<file>`` as ``upload/<project>/<file>`` (Label Studio's media
   folder layout); URLs and other absolute paths have no usable form here;
2. its file name, directly and under ``images/``;
3. for uploads, the file name without the ``abcd1234-`` prefix Label Studio adds, directly
   and under ``images/``.

The image is turned upright by its EXIF orientation, as browsers show it; a region's
``original_width``/``original_height`` must match that size, otherwise the task is skipped.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from . import rasterize
from .formats import AnnotationFormat, by_suffix
from .images import upright_image
from .paths import parent_of, resolve_inside
from .records import Fetch, ImageRecord, Issue, IssueKind, ReadResult, load_json

CONVERTED = ("polygonlabels", "rectanglelabels", "brushlabels")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def read_label_studio(name: str, data: bytes, fetch: Fetch) -> ReadResult:
    """Convert one Label Studio JSON export.

    Args:
        name: path of the JSON relative to the input root.
        data: its bytes.
        fetch: reads a file relative to the input root (the images).

    Returns:
        One item per task (or one SKIPPED item when the file is not a Label Studio export).
    """
    try:
        tasks = _tasks(data)
    except ValueError as error:
        result = ReadResult(items=1)
        result.skip(name, str(error))
        return result
    result = ReadResult(items=len(tasks))
    for index, task in enumerate(tasks):
        where = f"task {task.get('id', index)}"
        try:
            regions = _newest_annotation(task)["result"]
            record = _image(name, task["data"], fetch)
            _check_sizes(regions, record)
        except ValueError as error:
            result.skip(name, str(error), where)
            continue
        instances = []
        for number, region in enumerate(regions):
            kind = region.get("type") if isinstance(region, dict) else None
            if isinstance(kind, str) and not kind.endswith("labels"):
                continue  # choices, textarea, relation...: about the task, not a region
            value = region.get("value") if isinstance(region, dict) else None
            label = _label(value, kind)
            item = f"{where} result {number}" + (f" ({label})" if label else "")
            try:
                mask, clipped = _region_mask(region, kind, value, label, record)
            except ValueError as error:
                result.issues.append(Issue(IssueKind.DROPPED, name, str(error), item))
                continue
            result.admit(instances, name, item, label, mask, clipped)
        result.images.append(dataclasses.replace(record, instances=tuple(instances)))
    return result


def decode_brush(rle: object, expected: int) -> np.ndarray:
    """Decode Label Studio's brush RLE to a flat bool array: which values are non-zero.

    The code is a bit stream, most significant bit first: the value count (32 bits), the
    word size minus 1 (5 bits), four run-length field sizes minus 1 (4 bits each); then
    records of a flag bit (1: one word repeated, 0: literal words), a 2-bit index choosing
    the field size, that many bits of the record's length minus 1, and its word(s).

    Args:
        rle: the ``value.rle`` list of byte values.
        expected: how many values the image needs (height x width x 4).

    Raises:
        ValueError: not a list of bytes, a count other than ``expected``, or truncated.
    """
    if not isinstance(rle, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rle
    ):
        raise ValueError("brush rle must be a list of byte values 0..255")
    bits = _BitReader(bytes(rle))
    count, word = bits.read(32), bits.read(5) + 1
    sizes = [bits.read(4) + 1 for _ in range(4)]
    if count != expected:
        raise ValueError(
            f"brush rle holds {count} values; the image needs {expected} "
            "(original_height x original_width x 4)"
        )
    values = np.zeros(count, dtype=bool)
    start = 0
    while start < count:
        repeated = bits.read(1)
        # Label Studio's own decoder cuts a last run that passes the end; so does this one.
        end = min(start + 1 + bits.read(sizes[bits.read(2)]), count)
        if repeated:
            values[start:end] = bits.read(word) != 0
        else:
            for position in range(start, end):
                values[position] = bits.read(word) != 0
        start = end
    return values


class _BitReader:
    """Reads unsigned big-endian bit fields of up to 32 bits from bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def read(self, size: int) -> int:
        if self.position + size > 8 * len(self.data):
            raise ValueError("brush rle is truncated")
        first = self.position // 8
        chunk = self.data[first : first + 5]  # a 32-bit field at any bit offset spans <= 5 bytes
        shift = 8 * len(chunk) - self.position % 8 - size
        self.position += size
        return (int.from_bytes(chunk, "big") >> shift) & ((1 << size) - 1)


def _tasks(data: bytes) -> list[dict[str, Any]]:
    tasks = load_json(data)
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and "data" in t for t in tasks):
        raise ValueError(
            "not a Label Studio JSON export (expected a list of tasks with 'data' "
            "and 'annotations')"
        )
    return tasks


def _newest_annotation(task: dict[str, Any]) -> dict[str, Any]:
    annotations = task.get("annotations", task.get("completions")) or []  # older: completions
    if not isinstance(annotations, list):
        raise ValueError("annotations must be a list")
    usable = [
        (position, a)
        for position, a in enumerate(annotations)
        if isinstance(a, dict) and not a.get("was_cancelled") and isinstance(a.get("result"), list)
    ]
    if not usable:
        raise ValueError("no annotation that is not cancelled (unlabelled tasks are not converted)")

    def age(pair: tuple[int, dict[str, Any]]) -> tuple[str, int, int]:
        position, annotation = pair
        identifier = annotation.get("id")
        return (
            str(annotation.get("updated_at") or annotation.get("created_at") or ""),
            identifier if isinstance(identifier, int) else -1,
            position,
        )

    return max(usable, key=age)[1]


def _image(name: str, data: object, fetch: Fetch) -> ImageRecord:
    """Find and read the task's image (upright); the record has no instances yet."""
    reference = _image_reference(data)
    tried = []
    for candidate in image_candidates(reference):
        try:
            relative = resolve_inside(parent_of(name), candidate)
        except ValueError:
            continue  # e.g. "../x.jpg": its file name is tried next
        tried.append(relative)
        try:
            content = fetch(relative)
        except FileNotFoundError:
            continue
        height, width, upright = upright_image(content, relative)
        return ImageRecord(relative, name, height, width, image_bytes=upright)
    raise ValueError(f"image {reference!r} not found (looked for {', '.join(tried) or 'nothing'})")


def image_candidates(reference: str) -> list[str]:
    """Paths, relative to the JSON's folder, where the image of ``reference`` may be."""
    parts = urlsplit(reference)
    given, upload = [], reference.startswith("/data/upload/")
    if reference.startswith("/data/local-files/"):
        given = [unquote(p[2:]) for p in parts.query.split("&") if p.startswith("d=")]
    elif upload:
        given = [unquote(parts.path)[len("/data/") :]]
    elif not parts.scheme and not reference.startswith(("/", "\\")):
        given = [reference]
    base = posixpath.basename((given[0] if given else unquote(parts.path)).replace("\\", "/"))
    candidates = given + ([base, f"images/{base}"] if base else [])
    if upload and _UPLOAD_PREFIX.match(base) and len(base) > 9:
        candidates += [base[9:], f"images/{base[9:]}"]
    return list(dict.fromkeys(candidates))


def _image_reference(data: object) -> str:
    if not isinstance(data, dict):
        raise ValueError("task 'data' must be an object")
    image = data.get("image")
    if isinstance(image, str) and image.strip():
        return image
    for value in data.values():
        if isinstance(value, str) and value.lower().endswith(IMAGE_SUFFIXES):
            return value
    raise ValueError("task data has no image (no 'image' key, no value with an image suffix)")


def _check_sizes(regions: list[Any], record: ImageRecord) -> None:
    for region in regions:
        declared = (
            (region.get("original_height"), region.get("original_width"))
            if isinstance(region, dict)
            else (None, None)
        )
        if None not in declared and declared != (record.height, record.width):
            raise ValueError(
                f"image {record.file_name!r} is {record.width}x{record.height} "
                f"pixels but the annotation says original_width x original_height "
                f"= {declared[1]}x{declared[0]}"
            )


def _label(value: object, kind: object) -> str:
    names = value.get(kind) if isinstance(value, dict) and isinstance(kind, str) else None
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0]
    return ""


def _region_mask(
    region: object, kind: object, value: object, label: str, record: ImageRecord
) -> tuple[np.ndarray, bool]:
    """One region's mask and whether it was clipped."""
    if not isinstance(region, dict):
        raise ValueError("result must be an object")
    if kind not in CONVERTED:
        raise ValueError(f"result type {kind!r} is not converted (only {', '.join(CONVERTED)})")
    if not isinstance(value, dict) or not label:
        raise ValueError(f"{kind} result has no value.{kind} label")
    if region.get("image_rotation"):
        raise ValueError(f"image_rotation {region['image_rotation']} is not supported")
    height, width = record.height, record.width
    if kind == "brushlabels":
        if value.get("format") != "rle":
            raise ValueError(f"brush format {value.get('format')!r} is not supported (only 'rle')")
        values = decode_brush(value.get("rle"), height * width * 4)
        return values.reshape(height, width, 4)[:, :, 3].copy(), False  # alpha; frees RGB
    if kind == "polygonlabels":
        shape_type = "polygon"
        points = rasterize.checked_points(value.get("points"), "polygon")  # percent, checked
        xy = [
            (rasterize.scaled(x / 100, width), rasterize.scaled(y / 100, height)) for x, y in points
        ]
    else:
        shape_type, xy = _rectangle(value, height, width)
    mask = rasterize.shape_to_mask(shape_type, xy, height, width)
    return mask, rasterize.is_outside(rasterize.shape_extent(shape_type, xy), height, width)


def _rectangle(
    value: dict[str, Any], height: int, width: int
) -> tuple[str, list[tuple[float, float]]]:
    numbers = [
        value.get(key, 0 if key == "rotation" else None)
        for key in ("x", "y", "width", "height", "rotation")
    ]
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in numbers
    ):
        raise ValueError("rectangle x, y, width, height (and rotation) must be finite numbers")
    x, y, w, h = (
        rasterize.scaled(numbers[0] / 100, width),
        rasterize.scaled(numbers[1] / 100, height),
        rasterize.scaled(numbers[2] / 100, width),
        rasterize.scaled(numbers[3] / 100, height),
    )
    if numbers[4] % 360 == 0:
        return "rectangle", [(x, y), (x + w, y + h)]
    # Turned about the top-left corner; y points down, so this turns clockwise on screen.
    cos, sin = math.cos(math.radians(numbers[4])), math.sin(math.radians(numbers[4]))
    return "polygon", [
        (x + dx * cos - dy * sin, y + dx * sin + dy * cos)
        for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))
    ]


FORMAT = AnnotationFormat(
    "label-studio",
    "Label Studio JSON export: polygons, rectangles, brush",
    "*.json",
    by_suffix(".json"),
    read_label_studio,
)
