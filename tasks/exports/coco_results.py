"""Predictions as COCO results that pycocotools, FiftyOne and other COCO tools load.

Two files: ``images.json``, a COCO document with the images and categories (no annotations),
and ``results.json``, the list ``COCO(images.json).loadRes(results.json)`` takes: one entry per
detection with ``image_id``, ``category_id``, ``segmentation`` (compressed RLE), ``bbox``
(``[x, y, w, h]`` of the mask) and ``score``. Image ids are 1..N in file-name order; category
ids 1..K in the models' class order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pycocotools.mask as mask_utils

from tasks.exports.predictions import ImagePrediction
from tasks.failures import InvalidInput

IMAGES_NAME = "images.json"
RESULTS_NAME = "results.json"


def class_order(predictions: Sequence[ImagePrediction]) -> list[str]:
    """Class names in model order; classes of later model versions appended."""
    return list(dict.fromkeys(name for p in predictions for name in p.class_names))


def coco_documents(
    predictions: Sequence[ImagePrediction], file_names: Mapping[str, str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(images document, results list)`` for the predictions.

    Args:
        predictions: images and detections (masks required).
        file_names: image URI -> file name the images document gives it.
    """
    categories = {name: index for index, name in enumerate(class_order(predictions), start=1)}
    ordered = sorted(predictions, key=lambda p: file_names[p.image_uri])
    images, results = [], []
    for image_id, prediction in enumerate(ordered, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": file_names[prediction.image_uri],
                "height": prediction.height,
                "width": prediction.width,
            }
        )
        for instance in prediction.instances:
            rle = json.loads(instance.mask_rle) if instance.mask_rle else None
            if rle is None:
                raise InvalidInput(
                    f"{prediction.image_uri}: an instance has no mask (written "
                    "before schema version 2); re-run batch inference on it"
                )
            bbox = [float(v) for v in mask_utils.toBbox(_bytes_counts(rle))]
            results.append(
                {
                    "image_id": image_id,
                    "category_id": categories[instance.class_name],
                    "segmentation": rle,
                    "bbox": bbox,
                    "score": instance.score,
                }
            )
    document = {
        "images": images,
        "annotations": [],
        "categories": [{"id": index, "name": name} for name, index in categories.items()],
    }
    return document, results


def _bytes_counts(rle: dict[str, Any]) -> dict[str, Any]:
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
