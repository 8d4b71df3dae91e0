"""VIA (VGG Image Annotator 1.x/2.x) JSON, as in matterport's balloon sample, to image records.

The file maps keys to image entries ``{filename, size, regions, file_attributes}`` (a VIA 2
project file holds that map under ``_via_img_metadata``). ``regions`` is a list or a dict of
``{shape_attributes, region_attributes}``. Image ``filename`` is relative to the JSON. The
class is the region attribute named by ``attribute``: a string, or a checkbox dict with one
option ticked. Shapes are drawn with labelme's rasterizer (``rasterize``), like every other
source; an ellipse becomes a 64-gon so its rotation ``theta`` is honoured.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import rasterize
from .formats import AnnotationFormat, ReaderOption, by_suffix
from .images import fetch_image, image_size
from .paths import parent_of, resolve_inside
from .records import Fetch, ImageRecord, Issue, IssueKind, ReadResult, load_json

_ELLIPSE_VERTICES = 64


def read_via(
    name: str, data: bytes, fetch: Fetch, attribute: str = "label", default_label: str | None = None
) -> ReadResult:
    """Convert one VIA JSON file.

    Args:
        name: path of the JSON relative to the input root.
        data: its bytes.
        fetch: reads a file relative to the input root (the images).
        attribute: region attribute holding the class name.
        default_label: class of regions without that attribute (matterport's balloon file
            has no region attributes at all); None drops such regions with a reason.

    Returns:
        One item per image entry (or one SKIPPED item when the file cannot be parsed).
    """
    try:
        entries = _entries(data)
    except ValueError as error:
        result = ReadResult(items=1)
        result.skip(name, str(error))
        return result
    result = ReadResult(items=len(entries))
    for key, entry in entries:
        try:
            record = _image(name, entry, fetch)
        except ValueError as error:
            result.skip(name, str(error), f"image {key}")
            continue
        instances = []
        for index, region in _regions(entry):
            item = f"image {record.file_name} region {index}"
            try:
                if not isinstance(region, dict):
                    raise ValueError("region must be an object")
                label = _label(region, attribute, default_label)
                mask, clipped = _region_mask(region, record.height, record.width)
            except ValueError as error:
                result.issues.append(Issue(IssueKind.DROPPED, name, str(error), item))
                continue
            result.admit(instances, name, item, label, mask, clipped)
        result.images.append(
            ImageRecord(record.file_name, name, record.height, record.width, tuple(instances))
        )
    return result


def _entries(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    document = load_json(data)
    if isinstance(document, dict) and "_via_img_metadata" in document:
        document = document["_via_img_metadata"]
    if not isinstance(document, dict) or not all(
        isinstance(entry, dict) and "filename" in entry and "regions" in entry
        for entry in document.values()
    ):
        raise ValueError("not a VIA file (expected a map of {filename, regions} entries)")
    return list(document.items())


def _image(name: str, entry: dict[str, Any], fetch: Fetch) -> ImageRecord:
    filename = entry["filename"]
    if not isinstance(filename, str):
        raise ValueError(f"filename must be a string, got {filename!r}")
    file_name = resolve_inside(parent_of(name), filename)
    height, width = image_size(fetch_image(fetch, file_name, f"listed in {name}"), file_name)
    return ImageRecord(file_name, name, height, width)


def _regions(entry: dict[str, Any]) -> list[tuple[str, Any]]:
    regions = entry["regions"]
    if isinstance(regions, dict):
        return [(str(key), region) for key, region in regions.items()]
    if isinstance(regions, list):
        return [(str(index), region) for index, region in enumerate(regions)]
    raise ValueError("regions must be a list or a dict")


def _label(region: dict[str, Any], attribute: str, default_label: str | None) -> str:
    attributes = region.get("region_attributes")
    value = attributes.get(attribute) if isinstance(attributes, dict) else None
    if isinstance(value, dict):  # checkbox / multi-option attribute: {"car": true, ...}
        ticked = sorted(option for option, on in value.items() if on)
        if len(ticked) != 1:
            raise ValueError(
                f"region attribute {attribute!r} must have exactly one option ticked, got {ticked}"
            )
        value = ticked[0]
    if isinstance(value, str) and value.strip():
        return value.strip()
    if default_label:
        return default_label
    raise ValueError(
        f"region has no {attribute!r} attribute (set another attribute or a default label)"
    )


def _region_mask(region: dict[str, Any], height: int, width: int) -> tuple[np.ndarray, bool]:
    shape_type, xy = _as_labelme_shape(region.get("shape_attributes"))
    xy = rasterize.checked_points(xy, shape_type)
    mask = rasterize.shape_to_mask(shape_type, xy, height, width)
    return mask, rasterize.is_outside(rasterize.shape_extent(shape_type, xy), height, width)


def _as_labelme_shape(shape: Any) -> tuple[str, list[list[float]]]:
    """A VIA ``shape_attributes`` dict as a labelme shape type and points."""
    if not isinstance(shape, dict):
        raise ValueError("region has no shape_attributes")
    kind = shape.get("name")
    try:
        if kind in ("polygon", "polyline"):
            xs, ys = shape["all_points_x"], shape["all_points_y"]
            if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
                raise ValueError(
                    f"{kind} all_points_x and all_points_y must be lists of equal length"
                )
            return ("polygon" if kind == "polygon" else "linestrip"), [list(p) for p in zip(xs, ys)]
        if kind == "rect":
            x, y, w, h = (shape[k] for k in ("x", "y", "width", "height"))
            return "rectangle", [[x, y], [x + w, y + h]]
        if kind == "circle":
            return "circle", [[shape["cx"], shape["cy"]], [shape["cx"] + shape["r"], shape["cy"]]]
        if kind == "point":
            return "point", [[shape["cx"], shape["cy"]]]
        if kind == "ellipse":
            return "polygon", _ellipse_polygon(
                shape["cx"], shape["cy"], shape["rx"], shape["ry"], shape.get("theta", 0)
            )
    except KeyError as error:
        raise ValueError(f"{kind} shape lacks {error.args[0]!r}") from None
    except TypeError:
        raise ValueError(f"{kind} shape attributes must be numbers") from None
    raise ValueError(
        f"unsupported VIA shape {kind!r} (polygon, polyline, rect, circle, ellipse, point)"
    )


def _ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float) -> list[list[float]]:
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    points = []
    for k in range(_ELLIPSE_VERTICES):
        angle = 2 * math.pi * k / _ELLIPSE_VERTICES
        x, y = rx * math.cos(angle), ry * math.sin(angle)
        points.append([cx + x * cos_t - y * sin_t, cy + x * sin_t + y * cos_t])
    return points


FORMAT = AnnotationFormat(
    "via",
    "VGG Image Annotator 2.x project or export JSON",
    "*.json",
    by_suffix(".json"),
    read_via,
    options=(
        ReaderOption(
            "attribute",
            "--via-attribute",
            "VIA region attribute holding the class",
            default="label",
        ),
        ReaderOption(
            "default_label",
            "--default-label",
            "class of regions without that attribute",
            metavar="CLASS",
        ),
    ),
)
