"""CVAT for images 1.1 XML (``annotations.xml``) to image records.

One file describes many images: ``<image id name width height>`` elements below
``<annotations>``, each an item, holding shapes. Converted shapes, in pixels with the image
spanning ``[0, W] x [0, H]``, drawn with labelme's rasterizer like every other source:

* ``<polygon points="x1,y1;x2,y2;...">``;
* ``<box xtl ytl xbr ybr [rotation]>``, ``rotation`` in degrees clockwise about its centre;
* ``<mask rle left top width height>``: ``rle`` is comma-separated run lengths over the
  ``width x height`` box, row by row, alternating background and mask, background first.

Shapes sharing a ``group_id`` (other than 0) and a label are one instance, their masks
united, as labelme's ``group_id``; ``occluded`` and ``z_order`` are not used (instances may
overlap, as in COCO). ``<polyline>``, ``<points>``, ``<ellipse>``, ``<cuboid>``,
``<skeleton>`` are not converted: each is a DROPPED issue saying so. ``<tag>`` is a label of
the whole image, not an object, and is passed over. Tracks (CVAT for video) are not read.

Labels declared in ``<meta>`` come first in category order; a shape with an undeclared label
is dropped. An image ``name`` is looked up as the COCO reader looks up ``file_name`` (beside
the XML, in its parent folder, at the input root; each directly and under ``images/``); the
record's ``file_name`` is where it was found. CVAT shows images turned upright by their EXIF
orientation (older versions did not): the declared width and height tell which one the
coordinates refer to, the upright one when both fit. The standard library parser is used
(defusedxml is not a dependency): it never fetches external entities and expat >= 2.4.1
bounds entity expansion.
"""

from __future__ import annotations

import dataclasses
import math
from xml.etree import ElementTree

import numpy as np

from . import rasterize
from .formats import AnnotationFormat, by_suffix
from .images import exif_upright, find_image_near, image_size
from .paths import parent_of, resolve_inside
from .records import Fetch, ImageRecord, Instance, Issue, IssueKind, ReadResult, ShapeGroups

CONVERTED = ("polygon", "box", "mask")
NOT_SHAPES = ("tag",)


def read_cvat(name: str, data: bytes, fetch: Fetch) -> ReadResult:
    """Convert one CVAT for images XML file.

    Args:
        name: path of the XML relative to the input root, e.g. ``"job1/annotations.xml"``.
        data: the file's bytes.
        fetch: reads a file relative to the input root (the images).

    Returns:
        One item per ``<image>`` (or one SKIPPED item when the file is not usable CVAT XML).
    """
    try:
        root = _parse(data)
    except ValueError as error:
        result = ReadResult(items=1)
        result.skip(name, str(error))
        return result
    elements = root.findall("image")
    result = ReadResult(items=len(elements), labels=_declared_labels(root))
    for index, element in enumerate(elements):
        try:
            record = _image(name, element, fetch)
        except ValueError as error:
            result.skip(name, str(error), f"image {element.get('id', index)}")
            continue
        instances = _instances(name, element, record, result)
        result.images.append(dataclasses.replace(record, instances=tuple(instances)))
    return result


def decode_mask_rle(text: object, height: int, width: int) -> np.ndarray:
    """A ``<mask>``'s ``rle`` as bool ``[height, width]`` (its box, not the image).

    Raises:
        ValueError: if the counts are not non-negative integers covering the box exactly.
    """
    try:
        counts = [int(value) for value in str(text).split(",")] if text is not None else []
    except ValueError:
        raise ValueError("mask rle must be comma-separated integers") from None
    if not counts or min(counts) < 0:
        raise ValueError("mask rle must be comma-separated non-negative integers")
    if sum(counts) != height * width:
        raise ValueError(
            f"mask rle covers {sum(counts)} pixels but its box is {width}x{height} "
            f"= {height * width}"
        )
    values = np.arange(len(counts)) % 2 == 1  # runs alternate, background first
    return np.repeat(values, counts).reshape(height, width)


def _parse(data: bytes) -> ElementTree.Element:
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise ValueError(f"malformed XML ({error})") from None
    if root.tag != "annotations":
        raise ValueError(
            f"not a CVAT for images file (root element <{root.tag}>, expected <annotations>)"
        )
    if root.find("image") is None and root.find("track") is not None:
        raise ValueError(
            "a CVAT for video file (<track> elements); export as 'CVAT for images 1.1'"
        )
    return root


def _declared_labels(root: ElementTree.Element) -> tuple[str, ...]:
    """Label names of ``<meta>`` (task, job or project), in order."""
    meta = root.find("meta")
    names: dict[str, None] = {}
    for labels in meta.iter("labels") if meta is not None else ():
        for label in labels.findall("label"):
            text = (label.findtext("name") or "").strip()
            if text:
                names[text] = None
    return tuple(names)


def _image(name: str, element: ElementTree.Element, fetch: Fetch) -> ImageRecord:
    """Find, read and check the image; the record has no instances yet."""
    reference = element.get("name")
    if not reference:
        raise ValueError("image element has no name")
    declared = _positive_int(element, "height"), _positive_int(element, "width")
    image_path, content = find_image_near(fetch, parent_of(name), resolve_inside("", reference))
    height, width = image_size(content, image_path)
    sizes: dict[tuple[int, int], bytes | None] = {(height, width): None}
    upright = exif_upright(content)
    if upright is not None:  # set last: preferred when both sizes fit (a 180 degree turn)
        sizes[image_size(upright, image_path)] = upright
    if declared not in sizes:
        raise ValueError(
            f"image {image_path!r} is {width}x{height} pixels but the XML says "
            f"width x height = {declared[1]}x{declared[0]}"
        )
    return ImageRecord(image_path, name, declared[0], declared[1], image_bytes=sizes[declared])


def _instances(
    name: str, element: ElementTree.Element, record: ImageRecord, result: ReadResult
) -> list[Instance]:
    """Rasterize shapes and union them per ``(label, group_id)``, in first-seen order."""
    groups = ShapeGroups()
    shapes = [child for child in element if child.tag not in NOT_SHAPES]
    for index, shape in enumerate(shapes):
        label = shape.get("label") or ""
        item = f"image {record.file_name} shape {index} ({shape.tag}" + (
            f", {label})" if label else ")"
        )
        try:
            mask, clipped = _shape_mask(shape, label, result.labels, record.height, record.width)
        except ValueError as error:
            result.issues.append(Issue(IssueKind.DROPPED, name, str(error), item))
            continue
        if clipped:
            result.issues.append(
                Issue(
                    IssueKind.CLIPPED,
                    name,
                    f"coordinates outside the {record.width}x{record.height} image; clipped",
                    item,
                )
            )
        group = shape.get("group_id", "0").strip()
        groups.add(label, None if group in ("", "0") else group, index, mask)
    instances, empty = groups.instances(name, prefix=f"image {record.file_name} ")
    result.issues += empty
    return instances


def _shape_mask(
    shape: ElementTree.Element, label: str, declared: tuple[str, ...], height: int, width: int
) -> tuple[np.ndarray, bool]:
    """One shape's mask and whether it was clipped."""
    if shape.tag not in CONVERTED:
        raise ValueError(f"<{shape.tag}> is not converted (only polygon, box and mask are regions)")
    if not label:
        raise ValueError(f"{shape.tag} has no label")
    if declared and label not in declared:
        raise ValueError(f"unknown label {label!r} (not among the labels in <meta>)")
    if shape.tag == "mask":
        left, top, w, h = (_int(shape, key) for key in ("left", "top", "width", "height"))
        if w <= 0 or h <= 0:
            raise ValueError(f"mask box is {w}x{h}; width and height must be positive")
        bitmap = decode_mask_rle(shape.get("rle"), h, w)
        return rasterize.bitmap_to_mask(
            [(left, top), (left + w - 1, top + h - 1)], bitmap, height, width
        )
    shape_type, points = _polygon(shape) if shape.tag == "polygon" else _box(shape)
    xy = rasterize.checked_points(points, shape_type)
    mask = rasterize.shape_to_mask(shape_type, xy, height, width)
    return mask, rasterize.is_outside(rasterize.shape_extent(shape_type, xy), height, width)


def _polygon(shape: ElementTree.Element) -> tuple[str, list[list[float]]]:
    text = shape.get("points") or ""
    try:
        points = [[float(v) for v in pair.split(",")] for pair in text.split(";") if pair.strip()]
    except ValueError:
        raise ValueError(
            f"polygon points must be 'x1,y1;x2,y2;...' numbers, got {text[:40]!r}"
        ) from None
    if not all(len(point) == 2 for point in points):
        raise ValueError(f"polygon points must be 'x1,y1;x2,y2;...' pairs, got {text[:40]!r}")
    return "polygon", points


def _box(shape: ElementTree.Element) -> tuple[str, list[list[float]]]:
    x1, y1, x2, y2 = (_float(shape, key) for key in ("xtl", "ytl", "xbr", "ybr"))
    rotation = _float(shape, "rotation") if shape.get("rotation") is not None else 0.0
    if rotation % 360 == 0:
        return "rectangle", [[x1, y1], [x2, y2]]
    # y points down, so this standard rotation turns clockwise on screen, as CVAT does.
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    cos, sin = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    return "polygon", [
        [cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos]
        for x, y in corners
    ]


def _float(shape: ElementTree.Element, key: str) -> float:
    value = shape.get(key)
    if value is None:
        raise ValueError(f"{shape.tag} lacks {key!r}")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{shape.tag} {key}={value!r} is not a finite number")
    return number


def _int(shape: ElementTree.Element, key: str) -> int:
    number = _float(shape, key)
    if not number.is_integer():
        raise ValueError(f"{shape.tag} {key}={shape.get(key)!r} is not an integer")
    return int(number)


def _positive_int(element: ElementTree.Element, key: str) -> int:
    value = element.get(key)
    try:
        number = int(value or "")
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(f"image {key}={value!r} is not a positive integer")
    return number


FORMAT = AnnotationFormat("cvat", "CVAT for images 1.1 XML", "*.xml", by_suffix(".xml"), read_cvat)
