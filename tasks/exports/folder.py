"""What an export folder holds, per format: documents as bytes and where each image goes.

Images keep their path relative to the longest folder all exported images share (one image:
its file name), so names never collide::

    labelme        <relative image path>, <relative path with .json>
    coco-results   images/<relative image path>, images.json, results.json
    yolo           images/<relative image path>, labels/<relative path with .txt>, data.yaml
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence

from tasks.annotations.polygons import mask_polygons
from tasks.annotations.yolo import data_yaml, yolo_line
from tasks.exports import FORMATS
from tasks.exports.coco_results import IMAGES_NAME, RESULTS_NAME, class_order, coco_documents
from tasks.exports.labelme import labelme_document
from tasks.exports.predictions import ImagePrediction
from tasks.failures import InvalidSetting


def relative_names(image_uris: Sequence[str]) -> dict[str, str]:
    """Image URI -> path below the longest folder the URIs share."""
    folders = [uri.split("/")[:-1] for uri in image_uris]
    shared = 0
    while folders and all(len(f) > shared and f[shared] == folders[0][shared] for f in folders):
        shared += 1
    return {uri: "/".join(uri.split("/")[shared:]) for uri in image_uris}


def image_place(fmt: str, relative: str) -> str:
    """Where an image goes in the export folder."""
    check_format(fmt)
    return relative if fmt == "labelme" else posixpath.join("images", relative)


def export_documents(
    fmt: str, predictions: Sequence[ImagePrediction], names: Mapping[str, str]
) -> dict[str, bytes]:
    """Every file of the export except the images: path in the folder -> bytes.

    Args:
        fmt: one of ``FORMATS``.
        predictions: the images and their detections (masks required).
        names: image URI -> relative name (:func:`relative_names`).
    """
    check_format(fmt)
    if fmt == "labelme":
        return {
            _with_suffix(names[p.image_uri], ".json"): json_bytes(
                labelme_document(p, posixpath.basename(names[p.image_uri]))
            )
            for p in predictions
        }
    if fmt == "coco-results":
        document, results = coco_documents(
            predictions, {uri: image_place(fmt, name) for uri, name in names.items()}
        )
        return {IMAGES_NAME: json_bytes(document), RESULTS_NAME: json_bytes(results)}
    classes = class_order(predictions)
    files = {"data.yaml": data_yaml(classes, train="images", val="images").encode("utf-8")}
    for prediction in predictions:
        lines = [
            yolo_line(
                classes.index(instance.class_name), polygon, prediction.height, prediction.width
            )
            for instance in prediction.instances
            for polygon in mask_polygons(instance.mask())
        ]
        files[posixpath.join("labels", _with_suffix(names[prediction.image_uri], ".txt"))] = (
            "".join(line + "\n" for line in lines).encode("utf-8")
        )
    return files


def check_format(fmt: str) -> None:
    """Raise ValueError naming the formats unless ``fmt`` is one."""
    if fmt not in FORMATS:
        raise InvalidSetting(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _with_suffix(relative: str, suffix: str) -> str:
    return posixpath.splitext(relative)[0] + suffix


def json_bytes(document: object) -> bytes:
    """A document as the indented UTF-8 JSON every export writes."""
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
