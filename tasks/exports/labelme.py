"""Predictions as labelme JSON files that labelme opens and ``convert-masks`` reads back.

One file per image, beside it: ``version``, ``flags``, ``shapes``, ``imagePath`` (the image's
name relative to the JSON), ``imageData`` null, ``imageHeight``, ``imageWidth``. Each instance
becomes one polygon per hole-free piece of its mask (``tasks.annotations.polygons``); an
instance drawn as several polygons gives them one ``group_id``, which labelme (and our
reader) unite into one instance. The shape's ``description`` carries the score, so a reviewer
sees what the model was unsure of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tasks.annotations.polygons import mask_polygons
from tasks.exports.predictions import ImagePrediction

LABELME_VERSION = "5.5.0"  # the file format the keys below follow (labelme 5.x and later)


def instance_shapes(
    label: str, mask: np.ndarray, group_id: int, description: str = ""
) -> list[dict[str, Any]]:
    """One instance's polygon shapes; ``group_id`` is set only when it takes several."""
    polygons = mask_polygons(mask)
    group = group_id if len(polygons) > 1 else None
    return [
        {
            "label": label,
            "points": [[x, y] for x, y in polygon],
            "group_id": group,
            "description": description,
            "shape_type": "polygon",
            "flags": {},
            "mask": None,
        }
        for polygon in polygons
    ]


def labelme_file(
    image_path: str, height: int, width: int, shapes: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """A labelme document with the image referenced, not embedded."""
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": list(shapes),
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }


def labelme_document(prediction: ImagePrediction, image_path: str) -> dict[str, Any]:
    """The labelme document of one image's prediction.

    Args:
        prediction: the image and its detections (masks required).
        image_path: the image relative to the JSON file (usually its file name).
    """
    shapes = [
        shape
        for number, instance in enumerate(prediction.instances, start=1)
        for shape in instance_shapes(
            instance.class_name, instance.mask(), number, f"score {instance.score:.3f}"
        )
    ]
    return labelme_file(image_path, prediction.height, prediction.width, shapes)
