"""Detection metrics: matterport's per-image AP and COCO AP through pycocotools.

Shorthand: H, W image size; G ground-truth instances; P predicted instances. Boxes are
pixel `[N, (y1, x1, y2, x2)]` with exclusive y2/x2; masks are bool `[H, W, N]`; negative
ground-truth class ids mark crowd regions.

`compute_ap` is matterport's metric: mask IoU, predictions by descending score, greedy
matching with the same class, VOC all-points interpolated AP of one image; its mAP is the
mean of per-image APs. `DetectionEvaluator` collects images (detectron2's
reset/process/evaluate) and reports both that mAP and COCO's bbox/segm AP.

COCO keeps at most `maxDets` detections per image, 100 by default, which caps recall on
images with more instances (hundreds of nuclei): `DetectionEvaluator` raises the last
`maxDets` to the largest ground-truth count of an image (`coco_max_dets`). pycocotools'
`summarize()` assumes the default `[1, 10, 100]` (its AP looks up 100 by value, AP50 and the
others `maxDets[2]`), so the summary is read from `eval["precision"]` at the last `maxDets`.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn.boxes import compute_overlaps, extract_bboxes
from mrcnn.masks import compute_overlaps_masks

# The AP summary: (name, IoU threshold or None for 0.5:0.95, area range), as COCO's stats[:6].
_COCO_SUMMARY = (
    ("AP", None, "all"),
    ("AP50", 0.5, "all"),
    ("AP75", 0.75, "all"),
    ("APs", None, "small"),
    ("APm", None, "medium"),
    ("APl", None, "large"),
)
COCO_DEFAULT_MAX_DETS = (1, 10, 100)
_RESULT_KEYS = ("rois", "class_ids", "scores", "masks")


def compute_matches(
    gt_boxes: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_masks: np.ndarray,
    pred_boxes: np.ndarray,
    pred_class_ids: np.ndarray,
    pred_scores: np.ndarray,
    pred_masks: np.ndarray,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedily matches predictions to ground truth of the same class by mask IoU.

    Predictions are visited by descending score; each takes the unmatched ground-truth
    instance of its class with the highest IoU, if that IoU is >= `iou_threshold`.

    Args:
        gt_boxes: [G, (y1, x1, y2, x2)] (only their count is used, as in matterport).
        gt_class_ids: int [G].
        gt_masks: bool [H, W, G].
        pred_boxes: [P, (y1, x1, y2, x2)].
        pred_class_ids: int [P].
        pred_scores: float [P].
        pred_masks: bool [H, W, P].
        iou_threshold: least mask IoU of a match.
        score_threshold: predictions scoring below it are dropped before matching
            (matterport compared this value with IoUs; with the default 0.0 both agree).

    Returns:
        gt_match: int [G], index of the matched (sorted) prediction, or -1.
        pred_match: int [P'], for the kept predictions by descending score, the matched
            ground-truth index, or -1.
        overlaps: float [P', G] mask IoU, rows in the same order as `pred_match`.
    """
    _check_count("gt", len(gt_boxes), gt_class_ids, gt_masks)
    _check_count("pred", len(pred_boxes), pred_class_ids, pred_scores, pred_masks)
    order, overlaps = _ranked_overlaps(gt_masks, pred_scores, pred_masks, score_threshold)
    gt_match, pred_match = _match(
        overlaps, np.asarray(pred_class_ids)[order], np.asarray(gt_class_ids), iou_threshold
    )
    return gt_match, pred_match, overlaps


def _ranked_overlaps(
    gt_masks: np.ndarray, pred_scores: np.ndarray, pred_masks: np.ndarray, score_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The kept predictions by descending score, and their mask IoU with the ground truth."""
    pred_scores = np.asarray(pred_scores)
    order = np.argsort(-pred_scores, kind="stable")
    order = order[pred_scores[order] >= score_threshold]
    return order, compute_overlaps_masks(np.asarray(pred_masks)[..., order], gt_masks)


def _match(
    overlaps: np.ndarray, pred_class_ids: np.ndarray, gt_class_ids: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of ranked predictions (rows of `overlaps`) to ground truth."""
    gt_match = np.full(len(gt_class_ids), -1, dtype=np.int64)
    pred_match = np.full(len(pred_class_ids), -1, dtype=np.int64)
    for i in range(len(pred_class_ids)):
        for j in np.argsort(-overlaps[i], kind="stable"):
            if overlaps[i, j] < iou_threshold:
                break
            if gt_match[j] == -1 and pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j], pred_match[i] = i, j
                break
    return gt_match, pred_match


def _check_count(name: str, count: int, *arrays: np.ndarray) -> None:
    """Raises ValueError unless every array describes `count` instances (masks: last axis)."""
    for array in arrays:
        array = np.asarray(array)
        size = array.shape[-1] if array.ndim == 3 else len(array)
        if size != count:
            raise ValueError(f"{name} inputs disagree on the instance count: {size} vs {count}")


def compute_ap(
    gt_boxes: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_masks: np.ndarray,
    pred_boxes: np.ndarray,
    pred_class_ids: np.ndarray,
    pred_scores: np.ndarray,
    pred_masks: np.ndarray,
    iou_threshold: float = 0.5,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Average precision of one image at one IoU threshold (VOC all-points interpolation).

    Args: as `compute_matches`.

    Returns:
        mAP: the area under the interpolated precision/recall curve; 0.0 without ground truth.
        precisions: [P + 2] interpolated precision, padded with a leading and trailing point.
        recalls: [P + 2] recall, padded with 0 and 1.
        overlaps: [P, G] mask IoU, predictions by descending score.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes,
        gt_class_ids,
        gt_masks,
        pred_boxes,
        pred_class_ids,
        pred_scores,
        pred_masks,
        iou_threshold,
    )
    return (*_interpolated_ap(gt_match, pred_match), overlaps)


def _interpolated_ap(
    gt_match: np.ndarray, pred_match: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """VOC all-points AP of one image's matches, with its precision and recall points."""
    hits = np.cumsum(pred_match > -1)
    precisions = hits / np.arange(1, len(pred_match) + 1)
    recalls = hits / max(len(gt_match), 1)
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    # Interpolate: each precision becomes the best precision at this or higher recall.
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.flatnonzero(recalls[:-1] != recalls[1:]) + 1
    ap = np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps])
    return float(ap), precisions, recalls


def compute_ap_range(
    gt_box: np.ndarray,
    gt_class_id: np.ndarray,
    gt_mask: np.ndarray,
    pred_box: np.ndarray,
    pred_class_id: np.ndarray,
    pred_score: np.ndarray,
    pred_mask: np.ndarray,
    iou_thresholds: Sequence[float] | None = None,
    verbose: int = 1,
) -> float:
    """Mean of `compute_ap` over IoU thresholds (default 0.5, 0.55, ..., 0.95).

    Args: as `compute_ap`; `verbose` prints each AP, as matterport does.
    """
    if iou_thresholds is None:
        iou_thresholds = np.linspace(0.5, 0.95, 10)
    _check_count("gt", len(gt_box), gt_class_id, gt_mask)
    _check_count("pred", len(pred_box), pred_class_id, pred_score, pred_mask)
    # The overlaps do not depend on the threshold: computed once, matched ten times.
    order, overlaps = _ranked_overlaps(gt_mask, pred_score, pred_mask, 0.0)
    ranked_classes, gt_classes = np.asarray(pred_class_id)[order], np.asarray(gt_class_id)
    aps = []
    for threshold in iou_thresholds:
        ap = _interpolated_ap(*_match(overlaps, ranked_classes, gt_classes, threshold))[0]
        if verbose:
            print(f"AP @{threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(
    pred_boxes: np.ndarray, gt_boxes: np.ndarray, iou: float
) -> tuple[float, np.ndarray]:
    """Share of ground-truth boxes that some predicted box overlaps with IoU >= `iou`.

    Each prediction counts for its best-overlapping ground-truth box only.

    Args:
        pred_boxes: [P, (y1, x1, y2, x2)].
        gt_boxes: [G, (y1, x1, y2, x2)], G >= 1.
        iou: IoU threshold.

    Returns:
        recall: float in [0, 1].
        positive_ids: int [K], indices of the predictions reaching the threshold.
    """
    if len(gt_boxes) == 0:
        raise ValueError("compute_recall needs at least one ground-truth box")
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    if len(overlaps) == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    positive_ids = np.flatnonzero(overlaps.max(axis=1) >= iou)
    matched_gt = np.unique(overlaps.argmax(axis=1)[positive_ids])
    return len(matched_gt) / len(gt_boxes), positive_ids


class DetectionEvaluator:
    """Collects ground truth and detections image by image, then reports AP metrics.

    `evaluate()` returns a JSON-safe dict: "mAP50" (mean per-image mask AP@0.5, matterport's
    metric, over images with non-crowd ground truth), "mAP50_95" (same, averaged over IoU
    0.5:0.95), "images" (count), "largest_gt_instances" (the most non-crowd ground-truth
    instances in one image), "coco_max_dets" (COCOeval's `maxDets`, see `coco_max_dets`),
    and COCO's "bbox" and "segm" results ("AP", "AP50", "AP75", "APs", "APm", "APl",
    "per_class", all at the last `maxDets`). Undefined values (no ground truth) are None.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        """Args: class_names: names by class id; class_names[0] must be "BG"."""
        if not class_names or class_names[0] != "BG":
            raise ValueError(f"class_names must start with 'BG', got {list(class_names)}")
        self.class_names = list(class_names)
        self.reset()

    def reset(self) -> None:
        """Forgets every processed image."""
        self._images: list[dict[str, int]] = []
        self._image_ids: set[int] = set()
        self._gt: list[dict[str, Any]] = []
        self._detections: list[dict[str, Any]] = []
        self._ap50: list[float] = []
        self._ap_range: list[float] = []

    def process(
        self, image_id: int, gt_class_ids: np.ndarray, gt_masks: np.ndarray, result: dict
    ) -> None:
        """Adds one image.

        Args:
            image_id: unique id of the image.
            gt_class_ids: int [G]; negative for crowd regions.
            gt_masks: bool [H, W, G].
            result: one dict of `MaskRCNN.detect()`: "rois" int [P, (y1, x1, y2, x2)],
                "class_ids" int [P], "scores" float [P], "masks" bool [H, W, P].
        """
        gt_class_ids, gt_masks = np.asarray(gt_class_ids), np.asarray(gt_masks, dtype=bool)
        self._check_image(image_id, gt_class_ids, gt_masks, result)
        height, width = gt_masks.shape[:2]
        self._images.append({"id": int(image_id), "height": height, "width": width})
        self._image_ids.add(int(image_id))
        self._gt.extend(_gt_annotations(int(image_id), gt_class_ids, gt_masks))
        self._detections.extend(_detections(int(image_id), result))
        self._add_matterport_ap(gt_class_ids, gt_masks, result)

    def _check_image(
        self, image_id: int, gt_class_ids: np.ndarray, gt_masks: np.ndarray, result: dict
    ) -> None:
        """Raises ValueError on an inconsistent or repeated image."""
        if image_id in self._image_ids:
            raise ValueError(f"Image {image_id} was already processed")
        missing = [key for key in _RESULT_KEYS if key not in result]
        if missing:
            raise ValueError(f"result of image {image_id} lacks {missing}")
        if gt_masks.ndim != 3 or np.asarray(result["masks"]).shape[:2] != gt_masks.shape[:2]:
            raise ValueError(
                f"Image {image_id}: gt_masks {gt_masks.shape} and result masks "
                f"{np.asarray(result['masks']).shape} must both be [H, W, N] of one size"
            )
        _check_count("gt", len(gt_class_ids), gt_masks)
        pred_arrays = [result[key] for key in _RESULT_KEYS[1:]]
        _check_count("pred", len(result["rois"]), *pred_arrays)
        last_id = len(self.class_names) - 1
        for name, ids in (("gt", np.abs(gt_class_ids)), ("predicted", result["class_ids"])):
            ids = np.asarray(ids)
            if np.any((ids < 1) | (ids > last_id)):
                raise ValueError(f"Image {image_id}: {name} class ids {ids} outside 1..{last_id}")

    def _add_matterport_ap(
        self, gt_class_ids: np.ndarray, gt_masks: np.ndarray, result: dict
    ) -> None:
        """Records the image's AP@0.5 and AP@0.5:0.95.

        Crowd regions are left out of the ground truth (matterport's AP knows no crowds), so
        a prediction on a crowd region counts as a false positive here.
        """
        keep = gt_class_ids > 0
        if not keep.any():
            return  # AP is undefined without ground truth
        gt = (extract_bboxes(gt_masks[..., keep]), gt_class_ids[keep], gt_masks[..., keep])
        pred = (result["rois"], result["class_ids"], result["scores"], result["masks"])
        self._ap50.append(compute_ap(*gt, *pred, iou_threshold=0.5)[0])
        self._ap_range.append(compute_ap_range(*gt, *pred, verbose=0))

    def evaluate(self) -> dict[str, Any]:
        """Computes the metrics of all processed images (see the class docstring)."""
        if not self._images:
            raise ValueError("DetectionEvaluator.evaluate() needs at least one processed image")
        categories = [{"id": i, "name": name} for i, name in enumerate(self.class_names) if i]
        coco_gt = _in_memory_coco(self._images, _numbered(self._gt), categories)
        largest = self.largest_gt_instances()
        max_dets = coco_max_dets(largest)
        return {
            "mAP50": _mean_or_none(self._ap50),
            "mAP50_95": _mean_or_none(self._ap_range),
            "images": len(self._images),
            "largest_gt_instances": largest,
            "coco_max_dets": max_dets,
            "bbox": _coco_metrics(coco_gt, self._detections, "bbox", self.class_names, max_dets),
            "segm": _coco_metrics(coco_gt, self._detections, "segm", self.class_names, max_dets),
        }

    def largest_gt_instances(self) -> int:
        """The most non-crowd ground-truth instances (non-empty masks) in one processed image."""
        counts: dict[int, int] = {}
        for annotation in self._gt:
            if not annotation["iscrowd"]:
                counts[annotation["image_id"]] = counts.get(annotation["image_id"], 0) + 1
        return max(counts.values(), default=0)


def coco_max_dets(largest_gt_instances: int) -> list[int]:
    """COCOeval's `maxDets`: the default `[1, 10, 100]`, the last raised to the largest
    ground-truth count of one image, so that no image's recall is capped below its instances.

    Detections beyond it (lowest scores first) are still cut, as COCO cuts them.
    """
    first, second, last = COCO_DEFAULT_MAX_DETS
    return [first, second, max(last, int(largest_gt_instances))]


def _encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of one bool [H, W] mask."""
    return mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))


def _xywh(box: np.ndarray) -> list[float]:
    """[(y1, x1, y2, x2)] with exclusive y2/x2 → COCO [x, y, width, height]."""
    y1, x1, y2, x2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _gt_annotations(image_id: int, class_ids: np.ndarray, masks: np.ndarray) -> list[dict]:
    """COCO ground-truth annotations of one image (without ids); empty masks are skipped."""
    boxes = extract_bboxes(masks)
    return [
        {
            "image_id": image_id,
            "category_id": int(abs(class_ids[i])),
            "iscrowd": int(class_ids[i] < 0),
            "area": float(masks[..., i].sum()),
            "bbox": _xywh(boxes[i]),
            "segmentation": _encode(masks[..., i]),
        }
        for i in range(len(class_ids))
        if masks[..., i].any()
    ]


def _detections(image_id: int, result: dict) -> list[dict]:
    """COCO results of one image, each with both "bbox" and "segmentation"."""
    masks = np.asarray(result["masks"], dtype=bool)
    return [
        {
            "image_id": image_id,
            "category_id": int(result["class_ids"][i]),
            "score": float(result["scores"][i]),
            "bbox": _xywh(result["rois"][i]),
            "segmentation": _encode(masks[..., i]),
        }
        for i in range(len(result["class_ids"]))
    ]


def _numbered(annotations: list[dict]) -> list[dict]:
    """Copies annotations with ids 1..N (COCOeval treats id 0 as "unmatched")."""
    return [{**ann, "id": i} for i, ann in enumerate(annotations, start=1)]


def _in_memory_coco(images: list[dict], annotations: list[dict], categories: list[dict]) -> COCO:
    """A pycocotools COCO index built from dicts instead of a file."""
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _load_results(coco_gt: COCO, detections: list[dict], iou_type: str) -> COCO:
    """COCO index of the detections for one IoU type.

    Segmentation results drop "bbox" so that COCO computes their area from the mask (with a
    box present, `loadRes` uses the box area, which shifts the small/medium/large split).
    """
    drop = "bbox" if iou_type == "segm" else "segmentation"
    results = [{k: v for k, v in det.items() if k != drop} for det in detections]
    if not results:  # loadRes cannot take an empty list
        return _in_memory_coco(coco_gt.dataset["images"], [], coco_gt.dataset["categories"])
    with contextlib.redirect_stdout(io.StringIO()):
        return coco_gt.loadRes(results)


def _coco_metrics(
    coco_gt: COCO,
    detections: list[dict],
    iou_type: str,
    class_names: list[str],
    max_dets: Sequence[int] = COCO_DEFAULT_MAX_DETS,
) -> dict[str, Any]:
    """Runs COCOeval for "bbox" or "segm" with `max_dets`; returns overall and per-class AP."""
    coco_eval = COCOeval(coco_gt, _load_results(coco_gt, detections, iou_type), iou_type)
    coco_eval.params.maxDets = list(max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    metrics: dict[str, Any] = {
        name: _summary_ap(coco_eval, iou, area) for name, iou, area in _COCO_SUMMARY
    }
    metrics["per_class"] = _per_class_ap(coco_eval, class_names)
    return metrics


def _summary_ap(coco_eval: COCOeval, iou: float | None, area: str) -> float | None:
    """AP as `summarize()` computes it, at the last `maxDets` whatever its value.

    The mean of the defined precisions (COCO marks undefined ones -1) over IoU thresholds
    (or the one `iou`), recall thresholds and classes, for one area range.
    """
    params = coco_eval.params
    # precision: [IoU thresholds, recall thresholds, classes, area ranges, max dets].
    precision = coco_eval.eval["precision"][:, :, :, params.areaRngLbl.index(area), -1]
    if iou is not None:
        precision = precision[np.flatnonzero(np.isclose(params.iouThrs, iou))]
    defined = precision[precision > -1]
    return _finite_or_none(defined.mean()) if defined.size else None


def _per_class_ap(coco_eval: COCOeval, class_names: list[str]) -> dict[str, float | None]:
    """Per-class AP: precision averaged over IoU thresholds and recall (area all, last
    `maxDets`)."""
    # precision: [IoU thresholds, recall thresholds, classes, area ranges, max dets]; -1 = no GT.
    precision = coco_eval.eval["precision"]
    per_class = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[class_names[cat_id]] = float(values.mean()) if values.size else None
    return per_class


def _finite_or_none(value: float) -> float | None:
    """COCO's -1 sentinel and NaN become None; other values a Python float."""
    value = float(value)
    return None if math.isnan(value) or value < 0 else value


def _mean_or_none(values: list[float]) -> float | None:
    """Mean of values, or None when there are none."""
    return float(np.mean(values)) if values else None
