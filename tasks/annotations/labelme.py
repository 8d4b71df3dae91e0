"""labelme JSON files (format versions 3.x to 5.x) to image records.

Each file describes one image: ``imageData`` (base64, embedded) or ``imagePath`` (relative to
the JSON). Shapes become instances grouped by ``(label, group_id)`` as labelme's own
``labelme2coco`` groups them: a shape without ``group_id`` is an instance of its own, a group's
mask is the union of its shapes. ``__ignore__`` (and ``_background_``) shapes are not
instances.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
import PIL.Image

from tasks.review import MANIFEST_NAME

from . import rasterize
from .formats import AnnotationFormat
from .images import fetch_image, upright_image
from .paths import parent_of, resolve_inside, stem_of
from .records import (
    Fetch,
    ImageRecord,
    Instance,
    Issue,
    IssueKind,
    ReadResult,
    ShapeGroups,
    load_json,
)

NOT_INSTANCES = ("__ignore__", "_background_")


def read_labelme(name: str, data: bytes, fetch: Fetch) -> ReadResult:
    """Convert one labelme JSON file.

    Args:
        name: path of the JSON relative to the input root, e.g. ``"cats/a.json"``.
        data: the file's bytes.
        fetch: reads a file relative to the input root (for ``imagePath``).

    Returns:
        One item: either one image (with its dropped/clipped shapes as issues) or a SKIPPED
        issue saying why the file could not be used.
    """
    result = ReadResult(items=1)
    try:
        document = _parse(data)
        record = _image(name, document, fetch)
    except ValueError as error:
        result.skip(name, str(error))
        return result
    instances, result.issues, result.ignored = _instances(
        name, document["shapes"], record.height, record.width
    )
    result.images.append(
        ImageRecord(
            record.file_name,
            name,
            record.height,
            record.width,
            tuple(instances),
            record.image_bytes,
        )
    )
    return result


def _parse(data: bytes) -> dict[str, Any]:
    document = load_json(data)
    if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
        raise ValueError("not a labelme file (no 'shapes' list)")
    return document


def _image(name: str, document: dict[str, Any], fetch: Fetch) -> ImageRecord:
    """Find, read and check the image; the record has no instances yet."""
    image_path, image_data = document.get("imagePath"), document.get("imageData")
    embedded = None
    if image_data:
        try:
            embedded = base64.b64decode(image_data, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ValueError("imageData is not valid base64") from None
    if isinstance(image_path, str) and image_path.strip():
        file_name = resolve_inside(parent_of(name), image_path)
    elif embedded is not None:
        file_name = _name_for_embedded(name, embedded)
    else:
        raise ValueError("no imagePath and no imageData")
    content = (
        embedded if embedded is not None else fetch_image(fetch, file_name, f"imagePath of {name}")
    )
    height, width, upright = upright_image(content, file_name)
    declared = document.get("imageHeight"), document.get("imageWidth")
    if None not in declared and declared != (height, width):
        raise ValueError(
            f"image {file_name!r} is {width}x{height} pixels but the JSON says "
            f"imageWidth x imageHeight = {declared[1]}x{declared[0]}"
        )
    to_write = upright if upright is not None else embedded
    return ImageRecord(file_name, name, height, width, (), to_write)


def _name_for_embedded(name: str, content: bytes) -> str:
    """``<folder>/<json stem>.<format>`` for an image that exists only as ``imageData``."""
    try:
        with PIL.Image.open(io.BytesIO(content)) as image:
            suffix = {"JPEG": "jpg"}.get(image.format, (image.format or "png").lower())
    except OSError as error:
        raise ValueError(f"imageData is not a readable image ({error})") from None
    folder = parent_of(name)
    return f"{folder}/{stem_of(name)}.{suffix}" if folder else f"{stem_of(name)}.{suffix}"


def _instances(
    name: str, shapes: list[Any], height: int, width: int
) -> tuple[list[Instance], list[Issue], int]:
    """Rasterize shapes and union them per ``(label, group_id)``, in first-seen order."""
    groups = ShapeGroups()
    issues: list[Issue] = []
    ignored = 0
    for index, shape in enumerate(shapes):
        label = shape.get("label") if isinstance(shape, dict) else None
        item = f"shape {index}" + (f" ({label})" if isinstance(label, str) else "")
        if isinstance(label, str) and label in NOT_INSTANCES:
            ignored += 1
            continue
        try:
            mask, clipped, group_id = _shape_mask(shape, label, height, width)
        except ValueError as error:
            issues.append(Issue(IssueKind.DROPPED, name, str(error), item))
            continue
        if clipped:
            issues.append(
                Issue(
                    IssueKind.CLIPPED,
                    name,
                    f"coordinates outside the {width}x{height} image; clipped",
                    item,
                )
            )
        groups.add(label, group_id, index, mask)
    instances, empty = groups.instances(name)
    return instances, issues + empty, ignored


def _shape_mask(
    shape: object, label: object, height: int, width: int
) -> tuple[np.ndarray, bool, object]:
    """One shape's mask, whether it was clipped, and its group id."""
    if not isinstance(label, str) or not label:
        raise ValueError("shape has no label")
    group_id = shape.get("group_id")
    if group_id is not None and (
        isinstance(group_id, bool) or not isinstance(group_id, (int, str))
    ):
        raise ValueError(f"group_id must be an integer or null, got {group_id!r}")
    shape_type = shape.get("shape_type") or "polygon"  # labelme 3.x files have no shape_type
    xy = rasterize.checked_points(shape.get("points"), shape_type)
    if shape_type == "mask":
        mask, clipped = rasterize.bitmap_to_mask(xy, _bitmap(shape.get("mask")), height, width)
    else:
        mask = rasterize.shape_to_mask(shape_type, xy, height, width)
        clipped = rasterize.is_outside(rasterize.shape_extent(shape_type, xy), height, width)
    return mask, clipped, group_id


def _bitmap(encoded: object) -> np.ndarray:
    """Decode a ``mask`` shape's base64 PNG to bool ``[h, w]``."""
    if not isinstance(encoded, str):
        raise ValueError("mask shape has no base64 'mask' bitmap")
    try:
        with PIL.Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
            bitmap = np.asarray(image)
    except (binascii.Error, OSError, ValueError):
        raise ValueError("mask bitmap is not a base64-encoded image") from None
    if bitmap.ndim != 2:
        raise ValueError(f"mask bitmap must have one channel, got shape {bitmap.shape}")
    return bitmap.astype(bool)


def is_labelme_source(relative: str) -> bool:
    """Every ``*.json`` but a review folder's top-level ``review.json`` (its manifest)."""
    return relative.lower().endswith(".json") and relative != MANIFEST_NAME


FORMAT = AnnotationFormat(
    "labelme", "labelme JSON files, one image each", "*.json", is_labelme_source, read_labelme
)
