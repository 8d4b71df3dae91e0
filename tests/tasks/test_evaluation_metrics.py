"""Evaluation numbers on hand-made cases: area-ratio errors and their baselines worked by
hand, AP against pycocotools run directly on the same masks."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tasks.evaluation import (
    AreaRatioErrors,
    Sample,
    area_percentages,
    detection_limit,
    evaluate_results,
    instance_counts,
    metrics_table,
)
from tests.support.evaluation_samples import CELL_PCT, missed_one_samples

CLASSES = ["BG", "a", "b"]


def box_mask(y1: int, x1: int, y2: int, x2: int) -> np.ndarray:
    """A 10×10 mask with rows y1..y2-1 and columns x1..x2-1 set."""
    mask = np.zeros((10, 10), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def result(items: list[tuple[int, float, tuple[int, int, int, int]]]) -> dict[str, np.ndarray]:
    """A detect() result from (class id, score, box) items; each mask fills its box."""
    return {
        "rois": np.array([box for _, _, box in items], dtype=np.int32).reshape(-1, 4),
        "class_ids": np.array([c for c, _, _ in items], dtype=np.int32),
        "scores": np.array([s for _, s, _ in items], dtype=np.float32),
        "masks": np.stack([box_mask(*box) for _, _, box in items], axis=-1),
    }


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


def samples() -> list[Sample]:
    image = np.zeros((10, 10, 3), np.uint8)  # two classes: no Otsu, so the image is not read
    return [
        Sample(
            image,
            np.array(ids, dtype=np.int32),
            np.stack([box_mask(*b) for b in boxes], axis=-1),
            pred,
        )
        for (ids, boxes), pred in zip(GT, PREDICTIONS)
    ]


def test_area_ratio_errors_by_hand():
    # Image 0: gt a 41 %, b 8 %; predicted a 16 + 20 + 6 = 42 %, b 0 %  -> errors 1 and 8.
    # Image 1: gt a 0 %, b 36 %; predicted a 9 %, b 30 %                -> errors 9 and 6.
    areas = evaluate_results(CLASSES, samples())["area_ratio_error"]
    a, b = areas["per_class"]["a"], areas["per_class"]["b"]
    assert (a["mae_pp"], a["gt_mean_pct"], a["pred_mean_pct"]) == pytest.approx((5.0, 20.5, 25.5))
    assert (b["mae_pp"], b["gt_mean_pct"], b["pred_mean_pct"]) == pytest.approx((7.0, 22.0, 15.0))
    assert areas["mean_mae_pp"] == pytest.approx(6.0) and areas["images"] == 2
    # Bias: a over by 1 and 9 -> +5; b under by 8 and 6 -> -7.
    assert (a["bias_pp"], b["bias_pp"]) == pytest.approx((5.0, -7.0))
    # Two images: every resample's MAE is one of 1, 5 or 9 (a), so the interval spans them.
    assert a["mae_ci95_pp"] == pytest.approx([1.0, 9.0])
    # Counts: a 2 true, 3 predicted in image 0, 0 and 1 in image 1; b 1/0 and 1/1.
    assert a["count_error"] == pytest.approx(
        {"mean_absolute": 1.0, "median_relative": 0.5, "images_with_instances": 1}
    )
    assert b["count_error"] == pytest.approx(
        {"mean_absolute": 0.5, "median_relative": 0.5, "images_with_instances": 2}
    )
    assert areas["bootstrap"] == {"resamples": 2000, "seed": 0, "confidence": 0.95, "unit": "image"}


def test_nothing_is_a_baseline_and_otsu_is_not_applicable_with_two_classes():
    b = evaluate_results(CLASSES, samples())["area_ratio_error"]["per_class"]["b"]
    nothing = b["baselines"]["nothing"]
    # Predicting nothing misses the whole true share: 8 and 36 % -> MAE 22, bias -22.
    assert (nothing["mae_pp"], nothing["bias_pp"]) == pytest.approx((22.0, -22.0))
    assert nothing["mae_ci95_pp"] == pytest.approx([8.0, 36.0])
    assert nothing["count_error"]["median_relative"] == 1.0
    # The model's errors (8, 6) against nothing's (8, 36): -15 pp, but 2 images prove little.
    assert nothing["model_minus_baseline_pp"] == pytest.approx(-15.0)
    assert nothing["model_minus_baseline_ci95_pp"] == pytest.approx([-30.0, 0.0])
    assert nothing["verdict"] == "no clear difference"
    otsu = b["baselines"]["otsu"]
    assert otsu["applicable"] is False and otsu["reason"].startswith(
        "not applicable: the dataset has 2 classes"
    )


def test_otsu_is_scored_on_a_single_class_dataset():
    areas = evaluate_results(["BG", "nucleus"], missed_one_samples(6))["area_ratio_error"]
    nuclei = areas["per_class"]["nucleus"]
    otsu = nuclei["baselines"]["otsu"]
    # The cells are bright on dark: Otsu finds exactly them, count and coverage.
    assert otsu["applicable"] is True
    assert otsu["mae_pp"] == pytest.approx(0.0) and otsu["count_error"]["mean_absolute"] == 0.0
    # The model misses one cell (1.5625 pp) and one instance in every image.
    assert (nuclei["mae_pp"], nuclei["bias_pp"]) == pytest.approx((CELL_PCT, -CELL_PCT))
    assert nuclei["mae_ci95_pp"] == pytest.approx([CELL_PCT, CELL_PCT])
    assert nuclei["count_error"]["mean_absolute"] == 1.0
    # Image k holds k + 2 cells: relative count errors 1/2 ... 1/7, median (1/4 + 1/5) / 2.
    assert nuclei["count_error"]["median_relative"] == pytest.approx(0.225)
    assert otsu["model_minus_baseline_pp"] == pytest.approx(CELL_PCT)
    assert otsu["verdict"] == "baseline better"
    assert nuclei["baselines"]["nothing"]["verdict"] == "model better"


def test_area_of_overlapping_instances_is_their_union():
    masks = np.stack([box_mask(0, 0, 5, 5), box_mask(0, 0, 5, 10), box_mask(9, 9, 10, 10)], axis=-1)
    # class 1: 25 px and 50 px overlapping, union 50 px; the crowd region (-2) counts for class 2.
    assert area_percentages(masks, np.array([1, 1, -2]), 3) == pytest.approx([50.0, 1.0])
    assert area_percentages(np.zeros((4, 5, 0), bool), np.zeros(0, int), 3) == pytest.approx([0, 0])


def coco_stats(iou_type: str, category: int | None = None) -> np.ndarray:
    """COCOeval on the same case, built here independently of the code under test."""
    images, annotations, detections = [], [], []
    for image_id, ((ids, boxes), pred) in enumerate(zip(GT, PREDICTIONS)):
        images.append({"id": image_id, "height": 10, "width": 10})
        for class_id, box in zip(ids, boxes):
            rle = mask_utils.encode(np.asfortranarray(box_mask(*box), dtype=np.uint8))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_id,
                    "iscrowd": 0,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": list(mask_utils.toBbox(rle)),
                }
            )
        for i in range(len(pred["class_ids"])):
            rle = mask_utils.encode(np.asfortranarray(pred["masks"][..., i], dtype=np.uint8))
            entry = {
                "image_id": image_id,
                "category_id": int(pred["class_ids"][i]),
                "score": float(pred["scores"][i]),
            }
            entry.update(
                {"segmentation": rle}
                if iou_type == "segm"
                else {"bbox": list(mask_utils.toBbox(rle))}
            )
            detections.append(entry)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        }
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
    assert rows[1]["area_bias_pp"] == -7.0 and rows[1]["nothing_mae_pp"] == 22.0
    assert rows[1]["otsu_mae_pp"] is None


def test_instance_counts_leave_out_crowd_regions():
    assert instance_counts(np.array([1, 2, 2, -1, 3]), 4).tolist() == [1, 2, 1]
    assert instance_counts(np.zeros(0, np.int32), 3).tolist() == [0, 0]


def test_detection_limit_is_capped_below_the_fullest_image():
    assert detection_limit({"DETECTION_MAX_INSTANCES": 100}, 150).as_dict() == {
        "detection_max_instances": 100,
        "largest_gt_instances": 150,
        "capped": True,
    }
    assert not detection_limit({"DETECTION_MAX_INSTANCES": 256}, 150).capped
    assert detection_limit({}, 40).detection_max_instances == 100  # Config's default


def test_empty_evaluation_is_an_error():
    with pytest.raises(ValueError, match="at least one processed image"):
        AreaRatioErrors(CLASSES).evaluate()
