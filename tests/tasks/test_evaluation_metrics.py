"""Evaluation numbers on a hand-made case: area-ratio errors worked by hand, AP against
pycocotools run directly on the same masks."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tasks.evaluation import AreaRatioErrors, area_percentages, evaluate_results, metrics_table

CLASSES = ["BG", "a", "b"]


def box_mask(y1: int, x1: int, y2: int, x2: int) -> np.ndarray:
    """A 10×10 mask with rows y1..y2-1 and columns x1..x2-1 set."""
    mask = np.zeros((10, 10), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def result(items: list[tuple[int, float, tuple[int, int, int, int]]]) -> dict[str, np.ndarray]:
    """A detect() result from (class id, score, box) items; each mask fills its box."""
    return {"rois": np.array([box for _, _, box in items], dtype=np.int32).reshape(-1, 4),
            "class_ids": np.array([c for c, _, _ in items], dtype=np.int32),
            "scores": np.array([s for _, s, _ in items], dtype=np.float32),
            "masks": np.stack([box_mask(*box) for _, _, box in items], axis=-1)}


# Image 0: a 16 px + a 25 px, b 8 px; predictions: a exact, a IoU 0.8, an a false positive
# with the highest score. Image 1: b 36 px; predictions: b IoU 30/36, an a false positive.
GT = [
    ([1, 1, 2], [(0, 0, 4, 4), (5, 5, 10, 10), (0, 6, 2, 10)]),
    ([2], [(2, 2, 8, 8)]),
]
PREDICTIONS = [
    result([(1, 0.95, (8, 0, 10, 3)), (1, 0.9, (0, 0, 4, 4)), (1, 0.8, (5, 5, 9, 10))]),
    result([(2, 0.7, (2, 2, 8, 7)), (1, 0.6, (2, 2, 5, 5))]),
]


def samples() -> list[tuple[np.ndarray, np.ndarray, dict]]:
    return [(np.array(ids, dtype=np.int32), np.stack([box_mask(*b) for b in boxes], axis=-1), pred)
            for (ids, boxes), pred in zip(GT, PREDICTIONS)]


def test_area_ratio_errors_by_hand():
    # Image 0: gt a 41 %, b 8 %; predicted a 16 + 20 + 6 = 42 %, b 0 %  -> errors 1 and 8.
    # Image 1: gt a 0 %, b 36 %; predicted a 9 %, b 30 %                -> errors 9 and 6.
    areas = evaluate_results(CLASSES, samples())["area_ratio_error"]
    assert areas["per_class"]["a"] == pytest.approx({"mae_pp": 5.0, "gt_mean_pct": 20.5,
                                                     "pred_mean_pct": 25.5})
    assert areas["per_class"]["b"] == pytest.approx({"mae_pp": 7.0, "gt_mean_pct": 22.0,
                                                     "pred_mean_pct": 15.0})
    assert areas["mean_mae_pp"] == pytest.approx(6.0) and areas["images"] == 2


def test_area_of_overlapping_instances_is_their_union():
    masks = np.stack([box_mask(0, 0, 5, 5), box_mask(0, 0, 5, 10), box_mask(9, 9, 10, 10)], axis=-1)
    # class 1: union of 25 px and 50 px overlapping = 50 px; the crowd region (-2) counts for class 2.
    assert area_percentages(masks, np.array([1, 1, -2]), 3) == pytest.approx([50.0, 1.0])
    assert area_percentages(np.zeros((4, 5, 0), bool), np.zeros(0, int), 3) == pytest.approx([0, 0])


def coco_stats(iou_type: str, category: int | None = None) -> np.ndarray:
    """COCOeval on the same case, built here independently of the code under test."""
    images, annotations, detections = [], [], []
    for image_id, ((ids, boxes), pred) in enumerate(zip(GT, PREDICTIONS)):
        images.append({"id": image_id, "height": 10, "width": 10})
        for class_id, box in zip(ids, boxes):
            rle = mask_utils.encode(np.asfortranarray(box_mask(*box), dtype=np.uint8))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": class_id, "iscrowd": 0, "segmentation": rle,
                                "area": float(mask_utils.area(rle)),
                                "bbox": list(mask_utils.toBbox(rle))})
        for i in range(len(pred["class_ids"])):
            rle = mask_utils.encode(np.asfortranarray(pred["masks"][..., i], dtype=np.uint8))
            entry = {"image_id": image_id, "category_id": int(pred["class_ids"][i]),
                     "score": float(pred["scores"][i])}
            entry.update({"segmentation": rle} if iou_type == "segm" else
                         {"bbox": list(mask_utils.toBbox(rle))})
            detections.append(entry)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), iou_type)
        if category is not None:
            evaluation.params.catIds = [category]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_ap_matches_pycocotools(iou_type: str):
    metrics = evaluate_results(CLASSES, samples())[iou_type]
    expected = coco_stats(iou_type)
    assert [metrics["AP"], metrics["AP50"], metrics["AP75"]] == pytest.approx(expected[:3])
    for class_id, name in enumerate(CLASSES[1:], start=1):
        assert metrics["per_class"][name] == pytest.approx(coco_stats(iou_type, class_id)[0])


def test_ap50_by_hand():
    # Class a: scores 0.95 FP, 0.9 TP, 0.8 TP, 0.6 FP over 2 gt -> interpolated precision 2/3
    # at every recall level. Class b: one of 2 gt found, precision 1 -> 51 of 101 recall points.
    metrics = evaluate_results(CLASSES, samples())["segm"]
    assert metrics["AP50"] == pytest.approx((2 / 3 + 51 / 101) / 2, abs=1e-6)


def test_metrics_table_rows():
    rows = metrics_table(evaluate_results(CLASSES, samples()))
    assert [row["class"] for row in rows] == ["a", "b"]
    assert rows[0]["area_mae_pp"] == 5.0 and rows[1]["gt_area_pct"] == 22.0


def test_empty_evaluation_is_an_error():
    with pytest.raises(ValueError, match="at least one processed image"):
        AreaRatioErrors(CLASSES).evaluate()
