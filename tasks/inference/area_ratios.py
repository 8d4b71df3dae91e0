"""Per-class area ratios and instance rows from one image's ``MaskRCNN.detect()`` result.

Shapes: N instances, C classes without the background (class id k has ``class_names[k - 1]``);
``masks`` [H, W, N] bool at the original image size, ``rois`` [N, (y1, x1, y2, x2)] int32 in
pixels with y2/x2 exclusive.

The area of a class is the number of pixels in the **union** of its instance masks: two
overlapping cars cover their shared pixels once. (The inference script of the legacy TF 1.15 /
Keras 2.3 matterport-based repository summed per-instance areas, which counts overlaps twice
and can exceed 100 %.)
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

import numpy as np

from tasks.annotations.rle import rle_string
from tasks.failures import InvalidSetting
from tasks.parquet_schemas import AreaRatioRow, InstanceRow, RunStamp

Detection = Mapping[str, np.ndarray]


def select_detections(detection: Detection, min_confidence: float) -> dict[str, np.ndarray]:
    """Keep the instances scoring at least ``min_confidence`` (all four arrays kept in step).

    Args:
        detection: ``rois`` [N, 4], ``class_ids`` [N], ``scores`` [N], ``masks`` [H, W, N].
        min_confidence: threshold in [0, 1].

    Returns:
        The same keys with the M <= N kept instances, in their original order.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidSetting(f"min_confidence must be in [0, 1], got {min_confidence}")
    keep = np.asarray(detection["scores"]) >= min_confidence
    if keep.all():  # the common case: no copy of the [H, W, N] masks
        return {key: np.asarray(detection[key]) for key in ("rois", "class_ids", "scores", "masks")}
    return {
        "rois": np.asarray(detection["rois"])[keep],
        "class_ids": np.asarray(detection["class_ids"])[keep],
        "scores": np.asarray(detection["scores"])[keep],
        "masks": np.asarray(detection["masks"])[..., keep],
    }


def class_areas(
    masks: np.ndarray, class_ids: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Instances and union pixels per class.

    Args:
        masks: [H, W, N] bool.
        class_ids: [N] ints in 1..num_classes.
        num_classes: C, the classes without the background.

    Returns:
        ``(instance_counts, pixel_counts)``: [C] int32 and [C] int64, index k - 1 for class k.
    """
    masks = np.asarray(masks, dtype=bool)
    class_ids = np.asarray(class_ids)
    if masks.ndim != 3 or masks.shape[2] != len(class_ids):
        raise ValueError(
            f"masks must be [H, W, N] with N = {len(class_ids)} class ids, got shape {masks.shape}"
        )
    outside = sorted({int(c) for c in class_ids if not 1 <= c <= num_classes})
    if outside:
        raise ValueError(f"class ids {outside} are outside 1..{num_classes}")
    counts = np.bincount(class_ids.astype(np.int64), minlength=num_classes + 1)[1:]
    pixels = np.zeros(num_classes, dtype=np.int64)
    for class_id in np.unique(class_ids):
        pixels[class_id - 1] = np.any(masks[..., class_ids == class_id], axis=-1).sum()
    return counts.astype(np.int32), pixels


def area_rows(
    image_uri: str,
    height: int,
    width: int,
    detection: Detection,
    class_names: Sequence[str],
    stamp: RunStamp,
    inferred_at: datetime.datetime,
) -> list[AreaRatioRow]:
    """One ``area_ratios`` row per class of the model, classes without instances included.

    The area ratio is the class's union pixels / (H * W), in [0, 1].
    """
    counts, pixels = class_areas(detection["masks"], detection["class_ids"], len(class_names))
    total = height * width
    return [
        AreaRatioRow(
            image_uri=image_uri,
            image_width=width,
            image_height=height,
            class_id=index + 1,
            class_name=name,
            instance_count=int(counts[index]),
            pixel_count=int(pixels[index]),
            area_ratio=float(pixels[index]) / total,
            model_name=stamp.model_name,
            model_version=stamp.model_version,
            run_id=stamp.run_id,
            inferred_at=inferred_at,
        )
        for index, name in enumerate(class_names)
    ]


def instance_rows(
    image_uri: str, detection: Detection, class_names: Sequence[str], stamp: RunStamp
) -> list[InstanceRow]:
    """One ``instances`` row per detected instance, in detection order: its box, its own mask
    pixels and the mask as COCO RLE JSON text."""
    masks = np.asarray(detection["masks"], dtype=bool)
    pixels = masks.sum(axis=(0, 1))
    rows = []
    for index, (box, class_id, score) in enumerate(
        zip(detection["rois"], detection["class_ids"], detection["scores"])
    ):
        y1, x1, y2, x2 = (int(v) for v in box)
        rows.append(
            InstanceRow(
                image_uri=image_uri,
                instance_index=index,
                class_id=int(class_id),
                class_name=class_names[int(class_id) - 1],
                score=float(score),
                y1=y1,
                x1=x1,
                y2=y2,
                x2=x2,
                pixel_count=int(pixels[index]),
                model_version=stamp.model_version,
                run_id=stamp.run_id,
                mask_rle=rle_string(masks[..., index]),
            )
        )
    return rows


def legend_lines(rows: Sequence[AreaRatioRow]) -> list[str]:
    """The overlay's text: ``"car: 12.34% (2)"`` per class with instances, as the legacy TF
    1.15 repository's inference script printed it."""
    lines = [
        f"{row.class_name}: {100.0 * row.area_ratio:.2f}% ({row.instance_count})"
        for row in rows
        if row.instance_count > 0
    ]
    return lines or ["no instances"]
