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

from tasks.annotations.polygons import mask_polygons
from tasks.exports.predictions import ImagePrediction, PredictedInstance

LABELME_VERSION = "5.5.0"  # the file format the keys below follow (labelme 5.x and later)


def labelme_document(prediction: ImagePrediction, image_path: str) -> dict[str, Any]:
    """The labelme document of one image's prediction.

    Args:
        prediction: the image and its detections (masks required).
        image_path: the image relative to the JSON file (usually its file name).
    """
    shapes: list[dict[str, Any]] = []
    group = 0
    for instance in prediction.instances:
        polygons = mask_polygons(instance.mask())
        group_id = None
        if len(polygons) > 1:
            group += 1
            group_id = group
        shapes += [_shape(instance, polygon, group_id) for polygon in polygons]
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": prediction.height,
            "imageWidth": prediction.width}


def _shape(instance: PredictedInstance, polygon: Sequence[tuple[float, float]],
           group_id: int | None) -> dict[str, Any]:
    return {"label": instance.class_name, "points": [[x, y] for x, y in polygon],
            "group_id": group_id, "description": f"score {instance.score:.3f}",
            "shape_type": "polygon", "flags": {}, "mask": None}
