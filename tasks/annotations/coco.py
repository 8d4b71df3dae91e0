"""COCO instances JSON to image records, validated and normalised.

Segmentations may be polygons (rasterized by pycocotools, COCO's own reference) or RLE,
compressed or not. Crowd regions stay crowd (``iscrowd=1``); images without annotations are
kept. Category names become labels in category-id order; the writer gives them new ids
1..K and records the old -> new mapping. An image ``file_name`` is looked up beside the
JSON, in the JSON folder's parent and at the input root, each directly and under
``images/``; it keeps its ``file_name`` in the output.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from .formats import AnnotationFormat, by_suffix
from .images import find_image_near, image_size
from .paths import parent_of, resolve_inside
from .records import Fetch, ImageRecord, Instance, Issue, IssueKind, ReadResult, load_json


def read_coco(name: str, data: bytes, fetch: Fetch) -> ReadResult:
    """Convert one COCO instances JSON file.

    Args:
        name: path of the JSON relative to the input root.
        data: its bytes.
        fetch: reads a file relative to the input root (the images).

    Returns:
        One item per image entry (or one SKIPPED item when the file is not usable COCO).
    """
    try:
        document = _parse(data)
        categories = _categories(document["categories"])
    except ValueError as error:
        result = ReadResult(items=1)
        result.skip(name, str(error))
        return result
    result = ReadResult(
        items=len(document["images"]),
        category_ids=categories,
        labels=tuple(categories[key] for key in sorted(categories)),
    )
    annotations = _annotations_by_image(name, document["annotations"], result)
    seen_ids: set[Any] = set()
    for index, entry in enumerate(document["images"]):
        try:
            record = _image(name, entry, fetch, seen_ids)
        except ValueError as error:
            result.skip(name, str(error), f"image {index}")
            if isinstance(entry, dict) and not isinstance(entry.get("id"), (dict, list)):
                annotations.pop(entry.get("id"), None)  # they go with the skipped image
            continue
        instances = []
        for annotation in annotations.pop(entry["id"], []):
            item = f"annotation {annotation.get('id')}"
            try:
                instance, clipped = _instance(annotation, categories, record.height, record.width)
            except ValueError as error:
                result.issues.append(Issue(IssueKind.DROPPED, name, str(error), item))
                continue
            if clipped:
                result.issues.append(
                    Issue(
                        IssueKind.CLIPPED,
                        name,
                        f"polygon outside the {record.width}x{record.height} image; clipped",
                        item,
                    )
                )
            instances.append(instance)
        result.images.append(dataclasses.replace(record, instances=tuple(instances)))
    for image_id, orphans in annotations.items():
        for annotation in orphans:
            result.issues.append(
                Issue(
                    IssueKind.DROPPED,
                    name,
                    f"unknown image_id {image_id!r}",
                    f"annotation {annotation.get('id')}",
                )
            )
    return result


def _parse(data: bytes) -> dict[str, Any]:
    document = load_json(data)
    if not isinstance(document, dict) or not all(
        isinstance(document.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise ValueError(
            "not a COCO instances file (needs images, annotations and categories lists)"
        )
    return document


def _categories(entries: list[Any]) -> dict[int, str]:
    """Category id -> name; ids and names must be unique."""
    categories: dict[int, str] = {}
    for entry in entries:
        if not (
            isinstance(entry, dict)
            and _is_int(entry.get("id"))
            and isinstance(entry.get("name"), str)
            and entry["name"]
        ):
            raise ValueError(f"category {entry!r} needs an integer id and a name")
        if entry["id"] in categories or entry["name"] in categories.values():
            raise ValueError(f"category id {entry['id']} / name {entry['name']!r} is repeated")
        categories[entry["id"]] = entry["name"]
    return categories


def _annotations_by_image(
    name: str, entries: list[Any], result: ReadResult
) -> dict[Any, list[dict]]:
    grouped: dict[Any, list[dict]] = {}
    for index, annotation in enumerate(entries):
        if not isinstance(annotation, dict) or isinstance(
            annotation.get("image_id"), (type(None), list, dict)
        ):
            result.issues.append(
                Issue(IssueKind.DROPPED, name, "annotation has no image_id", f"annotation {index}")
            )
            continue
        grouped.setdefault(annotation["image_id"], []).append(annotation)
    return grouped


def _image(name: str, entry: Any, fetch: Fetch, seen_ids: set[Any]) -> ImageRecord:
    if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
        raise ValueError("image entry needs an id and a file_name")
    if entry.get("id") in seen_ids or not _is_int(entry.get("id")):
        raise ValueError(f"image id {entry.get('id')!r} is missing, not an integer or repeated")
    seen_ids.add(entry["id"])
    file_name = resolve_inside("", entry["file_name"])
    image_path, content = find_image_near(fetch, parent_of(name), file_name)
    height, width = image_size(content, file_name)
    declared = entry.get("height"), entry.get("width")
    if declared != (height, width):
        raise ValueError(
            f"image {file_name!r} is {width}x{height} pixels but the JSON says "
            f"width x height = {declared[1]}x{declared[0]}"
        )
    return ImageRecord(file_name, name, height, width, image_path=image_path)


def _instance(
    annotation: dict, categories: dict[int, str], height: int, width: int
) -> tuple[Instance, bool]:
    """Decode one annotation to an instance; also whether its polygon left the image."""
    label = categories.get(annotation.get("category_id"))
    if label is None:
        raise ValueError(f"unknown category_id {annotation.get('category_id')!r}")
    segmentation = annotation.get("segmentation")
    clipped = False
    if isinstance(segmentation, list):
        polygons = _polygons(segmentation)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        coordinates = np.concatenate([np.asarray(p) for p in polygons])
        xs, ys = coordinates[0::2], coordinates[1::2]
        clipped = bool(xs.min() < 0 or ys.min() < 0 or xs.max() > width or ys.max() > height)
    elif isinstance(segmentation, dict):
        size = segmentation.get("size")
        if list(size or []) != [height, width]:
            raise ValueError(f"RLE size {size} differs from the image's [{height}, {width}]")
        counts = segmentation.get("counts")
        if not isinstance(counts, (str, list)):
            raise ValueError("RLE counts must be a string or a list of integers")
        rle = (
            mask_utils.frPyObjects(segmentation, height, width)
            if isinstance(counts, list)
            else {"size": [height, width], "counts": counts}
        )
    else:
        raise ValueError("segmentation must be a list of polygons or an RLE dict")
    try:
        mask = mask_utils.decode(rle).astype(bool)
    except (TypeError, ValueError) as error:
        raise ValueError(f"undecodable RLE ({error})") from None
    if mask.shape != (height, width) or not mask.any():
        raise ValueError("empty mask (no pixel inside the image)")
    return Instance(
        label,
        mask,
        crowd=bool(annotation.get("iscrowd", 0)),
        origin=f"annotation {annotation.get('id')}",
    ), clipped


def _polygons(segmentation: list[Any]) -> list[list[float]]:
    if not segmentation:
        raise ValueError("segmentation has no polygon")
    for polygon in segmentation:
        if not isinstance(polygon, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon
        ):
            raise ValueError("a polygon must be a flat list of numbers [x1, y1, x2, y2, ...]")
        if len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(f"polygon with fewer than 3 points ({len(polygon)} coordinates)")
    return [[float(v) for v in polygon] for polygon in segmentation]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


FORMAT = AnnotationFormat(
    "coco", "COCO instances JSON, polygons or RLE", "*.json", by_suffix(".json"), read_coco
)
