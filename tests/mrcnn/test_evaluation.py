"""Tests for mrcnn.evaluation: matterport's AP by hand, and the evaluator against pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn.boxes import extract_bboxes
from mrcnn.evaluation import (
    DetectionEvaluator,
    compute_ap,
    compute_ap_range,
    compute_matches,
    compute_recall,
)

H = W = 10
NAMES = ["BG", "cat", "dog"]


def _mask(y1: int, x1: int, y2: int, x2: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _instances(masks: list[np.ndarray], class_ids: list[int]) -> tuple[np.ndarray, ...]:
    stacked = np.stack(masks, axis=2) if masks else np.zeros((H, W, 0), dtype=bool)
    return extract_bboxes(stacked), np.array(class_ids, dtype=np.int32), stacked


def _result(masks: list[np.ndarray], class_ids: list[int], scores: list[float]) -> dict:
    rois, ids, stacked = _instances(masks, class_ids)
    return {"rois": rois, "class_ids": ids, "scores": np.array(scores), "masks": stacked}


CAT, DOG = _mask(0, 0, 4, 4), _mask(5, 5, 10, 10)
GT = _instances([CAT, DOG], [1, 2])


def _ap(result: dict, gt: tuple = GT, **kwargs: float) -> float:
    pred = (result["rois"], result["class_ids"], result["scores"], result["masks"])
    return compute_ap(*gt, *pred, **kwargs)[0]


def test_perfect_predictions_score_one() -> None:
    ap, precisions, recalls, overlaps = compute_ap(*GT, *GT[:2], np.array([0.9, 0.8]), GT[2])
    assert ap == 1.0
    np.testing.assert_allclose(precisions, [1, 1, 1, 0])
    np.testing.assert_allclose(recalls, [0, 0.5, 1, 1])
    np.testing.assert_allclose(overlaps, np.eye(2))


def test_missing_instance_halves_recall() -> None:
    assert _ap(_result([CAT], [1], [0.9])) == pytest.approx(0.5)


def test_wrong_class_never_matches() -> None:
    assert _ap(_result([CAT, DOG], [2, 1], [0.9, 0.8])) == 0.0


def test_false_positive_counts_only_when_ranked_first() -> None:
    gt = _instances([CAT], [1])
    stray = _mask(6, 0, 9, 3)
    # Ranked first, the stray box halves precision at full recall; ranked last it is free.
    assert _ap(_result([stray, CAT], [1, 1], [0.9, 0.8]), gt) == pytest.approx(0.5)
    assert _ap(_result([stray, CAT], [1, 1], [0.7, 0.8]), gt) == 1.0


def test_matches_prefer_same_class_and_use_each_gt_once() -> None:
    wide, narrow = _mask(0, 0, 4, 6), _mask(0, 1, 4, 6)  # IoU 20/24
    gt = _instances([wide, narrow], [1, 2])
    pred = _result([narrow, narrow], [1, 1], [0.9, 0.8])
    gt_match, pred_match, overlaps = compute_matches(
        *gt, pred["rois"], pred["class_ids"], pred["scores"], pred["masks"]
    )
    np.testing.assert_array_equal(gt_match, [0, -1])
    np.testing.assert_array_equal(pred_match, [0, -1])
    np.testing.assert_allclose(overlaps, [[20 / 24, 1], [20 / 24, 1]], rtol=1e-6)


def test_score_threshold_drops_weak_predictions() -> None:
    pred = _result([_mask(6, 0, 9, 3), CAT], [1, 1], [0.3, 0.8])
    gt = _instances([CAT], [1])
    _, pred_match, overlaps = compute_matches(
        *gt, pred["rois"], pred["class_ids"], pred["scores"], pred["masks"], score_threshold=0.5
    )
    np.testing.assert_array_equal(pred_match, [0])
    assert overlaps.shape == (1, 1)


def test_ap_range_counts_thresholds_below_the_iou(capsys: pytest.CaptureFixture) -> None:
    nearly = DOG.copy()
    nearly[5, 5:9] = False  # 21 of 25 pixels: IoU 0.84, matched at 0.50..0.80 (7 of 10)
    gt = _instances([DOG], [2])
    pred = _result([nearly], [2], [0.9])
    args = (*gt, pred["rois"], pred["class_ids"], pred["scores"], pred["masks"])
    assert compute_ap_range(*args) == pytest.approx(0.7)
    assert "AP @0.50-0.95:\t 0.700" in capsys.readouterr().out
    assert compute_ap_range(*args, iou_thresholds=[0.5, 0.9], verbose=0) == 0.5


def test_compute_recall_by_hand() -> None:
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    pred_boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]])
    recall, positive_ids = compute_recall(pred_boxes, gt_boxes, 0.5)
    assert recall == 0.5
    np.testing.assert_array_equal(positive_ids, [0, 1])


def test_mismatched_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="gt inputs disagree"):
        compute_ap(GT[0], GT[1][:1], GT[2], *GT[:2], np.ones(2), GT[2])


def test_evaluator_perfect_and_wrong_class() -> None:
    evaluator = DetectionEvaluator(NAMES)
    evaluator.process(1, GT[1], GT[2], _result([CAT, DOG], [1, 2], [0.9, 0.8]))
    metrics = evaluator.evaluate()
    assert metrics["mAP50"] == metrics["mAP50_95"] == 1.0 and metrics["images"] == 1
    for kind in ("bbox", "segm"):
        assert metrics[kind]["AP"] == pytest.approx(1.0)
        assert metrics[kind]["AP50"] == pytest.approx(1.0)
        assert metrics[kind]["per_class"] == pytest.approx({"cat": 1.0, "dog": 1.0})

    evaluator.reset()
    evaluator.process(1, GT[1][:1], GT[2][..., :1], _result([CAT], [2], [0.9]))
    metrics = evaluator.evaluate()
    assert metrics["mAP50"] == 0.0
    assert metrics["segm"]["AP"] == 0.0
    assert metrics["segm"]["per_class"] == {"cat": 0.0, "dog": None}  # no dog ground truth


def test_crowd_regions_are_ignored_by_coco_but_not_by_matterport() -> None:
    crowd = _mask(5, 0, 10, 5)
    evaluator = DetectionEvaluator(NAMES)
    evaluator.process(
        7,
        np.array([1, -2]),
        np.stack([CAT, crowd], axis=2),
        _result([crowd, CAT], [2, 1], [0.95, 0.9]),
    )
    metrics = evaluator.evaluate()
    assert metrics["mAP50"] == pytest.approx(0.5)  # the crowd hit ranks first as a false positive
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["segm"]["per_class"] == pytest.approx({"cat": 1.0, "dog": None})
    json.dumps(metrics, allow_nan=False)


def _scenario() -> list[tuple[int, np.ndarray, np.ndarray, dict]]:
    """Three images: a near miss, a duplicate, a wrong class, a crowd and an empty result."""
    shifted = _mask(1, 0, 5, 4)
    crowd = _mask(5, 0, 10, 5)
    big = np.zeros((H, W), dtype=bool)
    big[1:9, 1:9] = True
    return [
        (
            1,
            np.array([1, 2]),
            np.stack([CAT, DOG], 2),
            _result([shifted, DOG, DOG], [1, 2, 2], [0.6, 0.9, 0.7]),
        ),
        (
            2,
            np.array([2, -1, 1]),
            np.stack([DOG, crowd, CAT], 2),
            _result([CAT, crowd, DOG], [2, 1, 2], [0.8, 0.5, 0.4]),
        ),
        (3, np.array([1]), big[..., None], _result([], [], [])),
    ]


def _direct_coco(tmp_path: Path, iou_type: str, cat_ids: list[int] | None = None) -> np.ndarray:
    """COCOeval stats computed straight from json files written here."""
    images, annotations, results = [], [], []
    for image_id, class_ids, masks, result in _scenario():
        images.append({"id": image_id, "height": H, "width": W})
        for i, class_id in enumerate(class_ids):
            rle = mask_utils.encode(np.asfortranarray(masks[..., i].astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(abs(class_id)),
                    "iscrowd": int(class_id < 0),
                    "area": int(masks[..., i].sum()),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                }
            )
        for i, class_id in enumerate(result["class_ids"]):
            y1, x1, y2, x2 = (float(v) for v in result["rois"][i])
            rle = mask_utils.encode(np.asfortranarray(result["masks"][..., i].astype(np.uint8)))
            entry = {
                "image_id": image_id,
                "category_id": int(class_id),
                "score": float(result["scores"][i]),
            }
            if iou_type == "bbox":
                entry["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            results.append(entry)
    gt_file = tmp_path / "gt.json"
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    gt_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_file))
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), iou_type)
        if cat_ids is not None:
            coco_eval.params.catIds = cat_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_evaluator_agrees_with_pycocotools(tmp_path: Path, iou_type: str) -> None:
    evaluator = DetectionEvaluator(NAMES)
    for image_id, class_ids, masks, result in _scenario():
        evaluator.process(image_id, class_ids, masks, result)
    metrics = evaluator.evaluate()[iou_type]
    stats = _direct_coco(tmp_path, iou_type)
    for i, name in enumerate(["AP", "AP50", "AP75", "APs", "APm", "APl"]):
        if stats[i] < 0:  # COCO's "no ground truth in this area range"
            assert metrics[name] is None, name
        else:
            assert metrics[name] == pytest.approx(stats[i]), name
    assert 0 < metrics["AP"] < 1
    for cat_id, name in ((1, "cat"), (2, "dog")):
        # COCOeval restricted to one category reports that category's AP as its first stat.
        expected = _direct_coco(tmp_path, iou_type, [cat_id])[0]
        assert metrics["per_class"][name] == pytest.approx(expected)


def test_evaluator_matterport_map_by_hand() -> None:
    evaluator = DetectionEvaluator(NAMES)
    for image_id, class_ids, masks, result in _scenario():
        evaluator.process(image_id, class_ids, masks, result)
    metrics = evaluator.evaluate()
    # Image 1: dog 0.9 hit, dog 0.7 duplicate, cat 0.6 IoU 12/20 hit -> precisions 1, 1/2, 2/3
    # at recalls 1/2, 1/2, 1 -> AP 1/2 + 1/2 * 2/3. Image 2 (crowd dropped): cat labelled dog
    # 0.8 and the crowd hit 0.5 miss, dog 0.4 hits third -> 1/2 * 1/3. Image 3: nothing -> 0.
    expected = (0.5 + 0.5 * 2 / 3 + 0.5 / 3 + 0.0) / 3
    assert metrics["mAP50"] == pytest.approx(expected)
    assert metrics["images"] == 3


def test_evaluator_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="BG"):
        DetectionEvaluator(["cat", "dog"])
    evaluator = DetectionEvaluator(NAMES)
    with pytest.raises(ValueError, match="at least one processed image"):
        evaluator.evaluate()
    result = _result([CAT], [1], [0.9])
    evaluator.process(1, GT[1], GT[2], result)
    with pytest.raises(ValueError, match="Image 1 was already processed"):
        evaluator.process(1, GT[1], GT[2], result)
    with pytest.raises(ValueError, match="lacks \\['scores'\\]"):
        evaluator.process(2, GT[1], GT[2], {k: v for k, v in result.items() if k != "scores"})
    with pytest.raises(ValueError, match="predicted class ids \\[3\\] outside 1..2"):
        evaluator.process(3, GT[1], GT[2], _result([CAT], [3], [0.9]))
    with pytest.raises(ValueError, match="one size"):
        evaluator.process(4, GT[1], GT[2], {**result, "masks": np.zeros((5, 5, 1), bool)})


def _crowded(instances: int) -> tuple[np.ndarray, np.ndarray]:
    """One image holding `instances` separate 3×3 squares of class 1: ids and masks."""
    per_row = 15
    size = 4 * per_row
    masks = np.zeros((size, size, instances), dtype=bool)
    for k in range(instances):
        top, left = 4 * (k // per_row), 4 * (k % per_row)
        masks[top : top + 3, left : left + 3, k] = True
    return np.ones(instances, dtype=np.int32), masks


def _coco_default_segm_ap(class_ids: np.ndarray, masks: np.ndarray, scores: np.ndarray) -> float:
    """pycocotools with its default maxDets [1, 10, 100], straight from the masks."""
    encoded = [
        mask_utils.encode(np.asfortranarray(masks[..., i].astype(np.uint8)))
        for i in range(masks.shape[-1])
    ]
    annotations = [
        {
            "id": i + 1,
            "image_id": 0,
            "category_id": 1,
            "iscrowd": 0,
            "area": float(mask_utils.area(rle)),
            "bbox": list(mask_utils.toBbox(rle)),
            "segmentation": rle,
        }
        for i, rle in enumerate(encoded)
    ]
    results = [
        {"image_id": 0, "category_id": 1, "score": float(scores[i]), "segmentation": rle}
        for i, rle in enumerate(encoded)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": [{"id": 0, "height": masks.shape[0], "width": masks.shape[1]}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "cell"}],
        }
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), "segm")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return float(coco_eval.stats[0])


def test_ap_is_not_capped_below_the_instances_of_a_crowded_image() -> None:
    class_ids, masks = _crowded(150)
    scores = np.linspace(0.99, 0.5, 150)
    # COCO's default keeps 100 detections: recall stops at 100 / 150.
    assert _coco_default_segm_ap(class_ids, masks, scores) < 0.7
    evaluator = DetectionEvaluator(["BG", "cell"])
    evaluator.process(
        0,
        class_ids,
        masks,
        {"rois": extract_bboxes(masks), "class_ids": class_ids, "scores": scores, "masks": masks},
    )
    metrics = evaluator.evaluate()
    assert metrics["largest_gt_instances"] == 150 and metrics["coco_max_dets"] == [1, 10, 150]
    for kind in ("bbox", "segm"):
        assert metrics[kind]["AP"] == pytest.approx(1.0), kind
        assert metrics[kind]["AP50"] == pytest.approx(1.0), kind
        assert metrics[kind]["AP75"] == pytest.approx(1.0), kind
        assert metrics[kind]["APs"] == pytest.approx(1.0), kind  # 9 px squares are small
        assert metrics[kind]["APm"] is None and metrics[kind]["APl"] is None
        assert metrics[kind]["per_class"]["cell"] == pytest.approx(1.0), kind
    assert metrics["mAP50"] == 1.0


def test_max_dets_keeps_coco_default_up_to_100_instances() -> None:
    evaluator = DetectionEvaluator(NAMES)
    for image_id, class_ids, masks, result in _scenario():
        evaluator.process(image_id, class_ids, masks, result)
    metrics = evaluator.evaluate()
    # Crowd regions are no instances to find: image 2 holds 2, not 3.
    assert metrics["largest_gt_instances"] == 2 and metrics["coco_max_dets"] == [1, 10, 100]
