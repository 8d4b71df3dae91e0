"""Evaluation on the validation split: COCO AP (bbox, segm) and the per-class area-ratio error.

The **area ratio** of a class in an image is the share of its pixels covered by the union of
that class's instance masks, in percent (overlapping instances count once; crowd regions
count as their class). The **area-ratio error** of a class is the mean over the evaluated
images of |predicted ratio - ground-truth ratio|, in percentage points; an image where the
class is absent from both counts as an exact 0.

Shorthand: H, W image size; N instances; C classes including the background.
"""

from __future__ import annotations

import json
import posixpath
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from mrcnn.evaluation import DetectionEvaluator
from tasks import registry, storage
from tasks.inference.area_ratios import class_areas
from tasks.models import ModelArtifact, build
from tasks.training.data import check_classes, fetch_dataset, load_split

Sample = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]  # gt class ids, gt masks, result


def area_percentages(masks: np.ndarray, class_ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Percent of the image covered by each class.

    Args:
        masks: bool `[H, W, N]`.
        class_ids: int `[N]`; negative ids (crowd regions) count as their class.
        num_classes: C, including the background.

    Returns:
        float `[C - 1]`: the percentages of classes 1..C-1.
    """
    masks = np.asarray(masks, dtype=bool)
    _, pixels = class_areas(masks, np.abs(np.asarray(class_ids)), num_classes - 1)
    return 100.0 * pixels / (masks.shape[0] * masks.shape[1])


class AreaRatioErrors:
    """Collects ground-truth and predicted area ratios per image; reports the error per class."""

    def __init__(self, class_names: Sequence[str]) -> None:
        """Args: class_names: names by class id; class_names[0] is the background."""
        self.class_names = list(class_names)
        self.truth: list[np.ndarray] = []
        self.predicted: list[np.ndarray] = []

    def process(self, gt_class_ids: np.ndarray, gt_masks: np.ndarray, result: dict) -> None:
        """Add one image: ground truth `[H, W, G]` masks and a `detect()` result."""
        count = len(self.class_names)
        self.truth.append(area_percentages(gt_masks, gt_class_ids, count))
        self.predicted.append(area_percentages(result["masks"], result["class_ids"], count))

    def evaluate(self) -> dict[str, Any]:
        """`{per_class: {name: {mae_pp, gt_mean_pct, pred_mean_pct}}, mean_mae_pp, images}`."""
        if not self.truth:
            raise ValueError("AreaRatioErrors.evaluate() needs at least one processed image")
        truth, predicted = np.stack(self.truth), np.stack(self.predicted)
        errors = np.abs(predicted - truth).mean(axis=0)
        per_class = {name: {"mae_pp": float(errors[i]), "gt_mean_pct": float(truth[:, i].mean()),
                            "pred_mean_pct": float(predicted[:, i].mean())}
                     for i, name in enumerate(self.class_names[1:])}
        return {"per_class": per_class, "mean_mae_pp": float(errors.mean()), "images": len(truth)}


def evaluate_results(class_names: Sequence[str], samples: Iterable[Sample]) -> dict[str, Any]:
    """COCO/matterport AP (`DetectionEvaluator`) plus `area_ratio_error` over the samples.

    Args:
        class_names: names by class id, "BG" first.
        samples: `(gt_class_ids [G], gt_masks [H, W, G], detect() result)` per image.
    """
    detection, areas = DetectionEvaluator(class_names), AreaRatioErrors(class_names)
    for image_id, (gt_class_ids, gt_masks, result) in enumerate(samples):
        detection.process(image_id, gt_class_ids, gt_masks, result)
        areas.process(gt_class_ids, gt_masks, result)
    return {**detection.evaluate(), "area_ratio_error": areas.evaluate()}


def detect_samples(model: Any, dataset: Any) -> Iterable[Sample]:
    """Run `model.detect` over a prepared dataset in batches; yields samples in image order."""
    ids = list(dataset.image_ids)
    step = model.config.BATCH_SIZE
    for start in range(0, len(ids), step):
        batch = ids[start:start + step]
        results = model.detect([dataset.load_image(i) for i in batch])
        for image_id, result in zip(batch, results):
            gt_masks, gt_class_ids = dataset.load_mask(image_id)
            yield gt_class_ids, gt_masks, result


def metrics_table(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per class: AP (bbox, segm) and the area ratios and their error."""
    area = metrics["area_ratio_error"]["per_class"]
    bbox, segm = metrics["bbox"]["per_class"], metrics["segm"]["per_class"]
    return [{"class": name, "bbox_AP": _rounded(bbox.get(name)), "segm_AP": _rounded(segm.get(name)),
             "area_mae_pp": _rounded(area[name]["mae_pp"]),
             "gt_area_pct": _rounded(area[name]["gt_mean_pct"]),
             "pred_area_pct": _rounded(area[name]["pred_mean_pct"])} for name in area]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def default_output(artifact: ModelArtifact) -> str:
    """Where metrics go: ``<run>/evaluation`` for a checkpoint, else
    ``<registry>/.evaluations/<name>-vN-<time>`` (registry models) or
    ``<export>/evaluation`` (export folders)."""
    if artifact.reference:
        stamp = registry.now_iso().replace(":", "").replace("-", "")[:15]
        return storage.join(artifact.registry_uri, ".evaluations",
                            f"{artifact.name}-v{artifact.version}-{stamp}")
    if artifact.format == "keras":
        checkpoints = artifact.uri.rsplit("/", 2)
        run_dir = checkpoints[0] if len(checkpoints) == 3 and checkpoints[1] == "checkpoints" \
            else posixpath.dirname(artifact.uri)
        return storage.join(run_dir, "evaluation")
    return storage.join(artifact.uri, "evaluation")


@task(name="evaluate-on-validation", cache_policy=NO_CACHE, persist_result=False)
def evaluate_on_validation(model: ModelArtifact, dataset: str, output: str,
                           runtime: str = "tensorflow") -> dict[str, Any]:
    """Evaluate a pinned model on the dataset's val split; write `<output>/metrics.json`.

    A table artifact shows the per-class numbers.

    Returns:
        The metrics plus `model`, `dataset` (URI and content hash), `seconds` and
        `metrics_uri`.

    Raises:
        ValueError: empty val split, or classes that differ from the dataset's.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        fetched = fetch_dataset(dataset, work, splits=("val",))
        if not fetched.images["val"]:
            raise ValueError(f"split 'val' of dataset {dataset!r} has no images to evaluate on")
        classes = list(model.class_names)
        check_classes(classes, fetched, f"model {model.origin!r}")
        built = build(model, runtime, batch_size=int(model.config.get("IMAGES_PER_GPU", 1)))
        val_set = load_split(fetched.root, "val", classes)
        metrics = evaluate_results(["BG", *classes], detect_samples(built, val_set))
    metrics.update(model=model.describe(), dataset={"uri": fetched.uri, "hash": fetched.content_hash},
                   split="val", seconds=round(time.monotonic() - started, 3))
    uri = storage.write_bytes(storage.join(output, "metrics.json"),
                              json.dumps(metrics, indent=2).encode())
    segm, bbox, area = metrics["segm"], metrics["bbox"], metrics["area_ratio_error"]
    create_table_artifact(metrics_table(metrics), key="evaluate-model-metrics", description=(
        f"{model.identity} on {dataset} (val, {metrics['images']} images): segm AP {segm['AP']}, "
        f"AP50 {segm['AP50']}, AP75 {segm['AP75']}; bbox AP {bbox['AP']}; mean area-ratio "
        f"error {area['mean_mae_pp']:.3f} pp"))
    return {**metrics, "metrics_uri": uri}
