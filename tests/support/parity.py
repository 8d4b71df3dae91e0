"""The parity rule between two runtimes' `detect` results for the same images.

Same detections in the same order; boxes within 1 px, scores within `score_tolerance`, and
each mask's IoU with its counterpart at least `min_mask_iou`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def assert_same_detections(
    got: Sequence[dict],
    expected: Sequence[dict],
    score_tolerance: float = 1e-4,
    min_mask_iou: float = 0.99,
) -> None:
    assert len(got) == len(expected)
    for image, (ours, theirs) in enumerate(zip(got, expected)):
        assert len(theirs["class_ids"]) > 0, (
            f"image {image}: the reference found nothing to compare"
        )
        np.testing.assert_array_equal(
            ours["class_ids"], theirs["class_ids"], err_msg=f"image {image}"
        )
        np.testing.assert_allclose(ours["rois"], theirs["rois"], atol=1, err_msg=f"image {image}")
        np.testing.assert_allclose(
            ours["scores"], theirs["scores"], atol=score_tolerance, err_msg=f"image {image}"
        )
        for k in range(len(theirs["class_ids"])):
            iou = mask_iou(ours["masks"][..., k], theirs["masks"][..., k])
            assert iou >= min_mask_iou, f"image {image}, detection {k}: mask IoU {iou:.4f}"
