"""Evaluation on the validation split: COCO AP (bbox, segm) and the per-class area-ratio error
with its baselines.

The **area ratio** (coverage) of a class in an image is the share of its pixels covered by the
union of that class's instance masks, in percent (overlapping instances count once; crowd
regions count as their class). Per class, over the evaluated images, ``area_ratio_error``
reports the mean absolute error of the model's ratios in percentage points with a bootstrap
95 % interval, their bias, the instance-count error, and the same numbers for two baselines
on the same images: predicting nothing, and Otsu's threshold (single-class datasets only).
The statistics are `mrcnn.coverage`'s, the baselines `mrcnn.baselines`'; an image where a
class is absent from both truth and prediction counts as an exact 0.

Shorthand: H, W image size; N instances; C classes including the background.
"""

from __future__ import annotations

import json
import posixpath
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from mrcnn import coverage
from mrcnn.baselines import otsu_not_applicable, otsu_prediction
from mrcnn.config import Config
from mrcnn.evaluation import DetectionEvaluator
from tasks import registry, storage
from tasks.failures import InvalidInput
from tasks.inference.area_ratios import class_areas
from tasks.models import ModelArtifact, build
from tasks.training.data import check_classes, fetch_dataset, load_split

# The intervals of metrics.json (its keys say "ci95"): 2000 resamples of the images, seed 0.
BOOTSTRAP = coverage.Bootstrap(resamples=2000, seed=0, confidence=0.95)


@dataclass(frozen=True)
class Sample:
    """One evaluated image.

    Attributes:
        image: RGB uint8 ``[H, W, 3]``, as ``detect()`` received it (the Otsu baseline's input).
        gt_class_ids: int ``[G]``; negative for crowd regions.
        gt_masks: bool ``[H, W, G]``.
        result: the image's ``detect()`` result.
    """

    image: np.ndarray
    gt_class_ids: np.ndarray
    gt_masks: np.ndarray
    result: dict[str, np.ndarray]


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


def instance_counts(class_ids: np.ndarray, num_classes: int) -> np.ndarray:
    """int `[C - 1]`: instances of classes 1..C-1 (crowd regions, negative ids, are none)."""
    class_ids = np.asarray(class_ids, dtype=np.int64)
    return np.bincount(class_ids[class_ids > 0], minlength=num_classes)[1:num_classes]


class AreaRatioErrors:
    """Collects true, predicted and baseline area ratios and counts per image; reports the
    ``area_ratio_error`` block (see `evaluate`)."""

    def __init__(self, class_names: Sequence[str]) -> None:
        """Args: class_names: names by class id; class_names[0] is the background."""
        self.class_names = list(class_names)
        self.otsu_reason = otsu_not_applicable(self.class_names[1:])
        self.truth: list[np.ndarray] = []
        self.predicted: list[np.ndarray] = []
        self.true_counts: list[np.ndarray] = []
        self.predicted_counts: list[np.ndarray] = []
        self.otsu: list[tuple[float, int]] = []  # coverage and objects, single-class sets

    def process(self, sample: Sample) -> None:
        """Add one image."""
        count = len(self.class_names)
        result = sample.result
        self.truth.append(area_percentages(sample.gt_masks, sample.gt_class_ids, count))
        self.predicted.append(area_percentages(result["masks"], result["class_ids"], count))
        self.true_counts.append(instance_counts(sample.gt_class_ids, count))
        self.predicted_counts.append(instance_counts(result["class_ids"], count))
        if self.otsu_reason is None:
            found = otsu_prediction(sample.image)
            self.otsu.append((found.coverage_pct, found.objects))

    def evaluate(self) -> dict[str, Any]:
        """The block: ``per_class`` (name -> statistics and ``baselines``), ``mean_mae_pp``,
        ``images`` and ``bootstrap`` (its settings); keys in ``docs/concepts/accuracy.md``."""
        if not self.truth:
            raise ValueError("AreaRatioErrors.evaluate() needs at least one processed image")
        truth, predicted = np.stack(self.truth), np.stack(self.predicted)
        per_class = {name: self._class_block(i) for i, name in enumerate(self.class_names[1:])}
        errors = np.abs(predicted - truth).mean(axis=0)
        return {
            "per_class": per_class,
            "mean_mae_pp": float(errors.mean()),
            "images": len(truth),
            "bootstrap": {
                "resamples": BOOTSTRAP.resamples,
                "seed": BOOTSTRAP.seed,
                "confidence": BOOTSTRAP.confidence,
                "unit": "image",
            },
        }

    def _class_block(self, index: int) -> dict[str, Any]:
        """The model's statistics on class ``index + 1``, its mean ratios, its baselines'."""
        truth = np.array([ratios[index] for ratios in self.truth])
        true_counts = np.array([counts[index] for counts in self.true_counts])
        predicted = np.array([ratios[index] for ratios in self.predicted])
        predicted_counts = np.array([counts[index] for counts in self.predicted_counts])
        baselines = {
            "nothing": _baseline(
                np.zeros_like(truth), np.zeros_like(true_counts), predicted, truth, true_counts
            )
        }
        if self.otsu_reason is None:
            otsu = np.array(self.otsu, dtype=np.float64)
            baselines["otsu"] = _baseline(otsu[:, 0], otsu[:, 1], predicted, truth, true_counts)
        else:
            baselines["otsu"] = {"applicable": False, "reason": self.otsu_reason}
        return {
            **_statistics(predicted, predicted_counts, truth, true_counts),
            "gt_mean_pct": float(truth.mean()),
            "pred_mean_pct": float(predicted.mean()),
            "baselines": baselines,
        }


def _baseline(
    ratios: np.ndarray,
    counts: np.ndarray,
    model_ratios: np.ndarray,
    truth: np.ndarray,
    true_counts: np.ndarray,
) -> dict[str, Any]:
    """A baseline's statistics and how the model compares with it, image by image."""
    against = coverage.compare(model_ratios, ratios, truth, BOOTSTRAP)
    return {
        "applicable": True,
        **_statistics(ratios, counts, truth, true_counts),
        "model_minus_baseline_pp": against.difference_pp,
        "model_minus_baseline_ci95_pp": against.interval_pp.as_list(),
        "verdict": against.verdict,
    }


def _statistics(
    ratios: np.ndarray, counts: np.ndarray, truth: np.ndarray, true_counts: np.ndarray
) -> dict[str, Any]:
    """MAE with its interval, bias and count error of one predictor on one class."""
    error = coverage.coverage_error(ratios, truth, BOOTSTRAP)
    counted = coverage.count_error(counts, true_counts)
    return {
        "mae_pp": error.mae_pp,
        "mae_ci95_pp": error.mae_interval_pp.as_list(),
        "bias_pp": error.bias_pp,
        "count_error": {
            "mean_absolute": counted.mean_absolute,
            "median_relative": counted.median_relative,
            "images_with_instances": counted.images_with_instances,
        },
    }


def evaluate_results(class_names: Sequence[str], samples: Iterable[Sample]) -> dict[str, Any]:
    """COCO/matterport AP (`DetectionEvaluator`) plus `area_ratio_error` over the samples.

    Args:
        class_names: names by class id, "BG" first.
        samples: one per image.
    """
    detection, areas = DetectionEvaluator(class_names), AreaRatioErrors(class_names)
    for image_id, sample in enumerate(samples):
        detection.process(image_id, sample.gt_class_ids, sample.gt_masks, sample.result)
        areas.process(sample)
    return {**detection.evaluate(), "area_ratio_error": areas.evaluate()}


def detect_samples(model: Any, dataset: Any) -> Iterable[Sample]:
    """Run `model.detect` over a prepared dataset in batches; yields samples in image order."""
    ids = list(dataset.image_ids)
    step = model.config.BATCH_SIZE
    for start in range(0, len(ids), step):
        batch = ids[start : start + step]
        images = [dataset.load_image(i) for i in batch]
        results = model.detect(images)
        for image_id, image, result in zip(batch, images, results):
            gt_masks, gt_class_ids = dataset.load_mask(image_id)
            yield Sample(image, gt_class_ids, gt_masks, result)


@dataclass(frozen=True)
class DetectionLimit:
    """The model's DETECTION_MAX_INSTANCES beside the most instances of one evaluated image.

    ``detect()`` returns at most DETECTION_MAX_INSTANCES instances per image; below the
    largest ground-truth count, recall (and AP) on such images is capped by the setting, not
    by what the model learnt.
    """

    detection_max_instances: int
    largest_gt_instances: int

    @property
    def capped(self) -> bool:
        return self.detection_max_instances < self.largest_gt_instances

    def as_dict(self) -> dict[str, Any]:
        """``{detection_max_instances, largest_gt_instances, capped}``, as metrics.json has it."""
        return {
            "detection_max_instances": self.detection_max_instances,
            "largest_gt_instances": self.largest_gt_instances,
            "capped": self.capped,
        }


def detection_limit(config: Mapping[str, Any], largest_gt_instances: int) -> DetectionLimit:
    """The limit of a model config (`mrcnn.Config.to_dict()`; Config's default if unset)."""
    limit = config.get("DETECTION_MAX_INSTANCES", Config.DETECTION_MAX_INSTANCES)
    return DetectionLimit(int(limit), int(largest_gt_instances))


def metrics_table(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per class: AP (bbox, segm), the area ratios, their error and the baselines'."""
    area = metrics["area_ratio_error"]["per_class"]
    bbox, segm = metrics["bbox"]["per_class"], metrics["segm"]["per_class"]
    rows = []
    for name, stats in area.items():
        baselines = stats.get("baselines", {})
        low, high = stats.get("mae_ci95_pp", (None, None))
        rows.append(
            {
                "class": name,
                "bbox_AP": _rounded(bbox.get(name)),
                "segm_AP": _rounded(segm.get(name)),
                "area_mae_pp": _rounded(stats["mae_pp"]),
                "area_mae_ci95_low": _rounded(low),
                "area_mae_ci95_high": _rounded(high),
                "area_bias_pp": _rounded(stats.get("bias_pp")),
                "count_median_relative": _rounded(
                    stats.get("count_error", {}).get("median_relative")
                ),
                "nothing_mae_pp": _rounded(baselines.get("nothing", {}).get("mae_pp")),
                "otsu_mae_pp": _rounded(baselines.get("otsu", {}).get("mae_pp")),
                "gt_area_pct": _rounded(stats["gt_mean_pct"]),
                "pred_area_pct": _rounded(stats["pred_mean_pct"]),
            }
        )
    return rows


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def default_output(artifact: ModelArtifact) -> str:
    """Where metrics go: ``<run>/evaluation`` for a checkpoint, else
    ``<registry>/.evaluations/<name>-vN-<time>`` (registry models) or
    ``<export>/evaluation`` (export folders)."""
    if artifact.reference:
        stamp = registry.now_iso().replace(":", "").replace("-", "")[:15]
        return storage.join(
            artifact.registry_uri, ".evaluations", f"{artifact.name}-v{artifact.version}-{stamp}"
        )
    if artifact.format == "keras":
        checkpoints = artifact.uri.rsplit("/", 2)
        run_dir = (
            checkpoints[0]
            if len(checkpoints) == 3 and checkpoints[1] == "checkpoints"
            else posixpath.dirname(artifact.uri)
        )
        return storage.join(run_dir, "evaluation")
    return storage.join(artifact.uri, "evaluation")


@task(name="evaluate-on-validation", cache_policy=NO_CACHE, persist_result=False)
def evaluate_on_validation(
    model: ModelArtifact, dataset: str, output: str, runtime: str = "tensorflow"
) -> dict[str, Any]:
    """Evaluate a pinned model on the dataset's val split; write `<output>/metrics.json`.

    A table artifact shows the per-class numbers.

    Logs a warning, and records ``detection_limit.capped``, when the model's
    DETECTION_MAX_INSTANCES is below the most instances of one val image.

    Returns:
        The metrics plus `model`, `dataset` (URI and content hash), `split`,
        `detection_limit`, `seconds` and `metrics_uri`.

    Raises:
        ValueError: empty val split, or classes that differ from the dataset's.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        fetched = fetch_dataset(dataset, work, splits=("val",))
        if not fetched.images["val"]:
            raise InvalidInput(f"split 'val' of dataset {dataset!r} has no images to evaluate on")
        classes = list(model.class_names)
        check_classes(classes, fetched, f"model {model.origin!r}")
        built = build(model, runtime, batch_size=int(model.config.get("IMAGES_PER_GPU", 1)))
        # Images read as the model's config says (INTENSITY_NORMALIZATION): the Otsu baseline
        # thresholds the same normalised pixels detect() receives.
        val_set = load_split(fetched.root, "val", classes, built.config)
        metrics = evaluate_results(["BG", *classes], detect_samples(built, val_set))
    limit = detection_limit(model.config, metrics["largest_gt_instances"])
    if limit.capped:
        get_run_logger().warning(
            "model %s returns at most DETECTION_MAX_INSTANCES=%d instances per image, but a val "
            "image of %s holds %d: its recall and AP are capped by that setting",
            model.identity,
            limit.detection_max_instances,
            dataset,
            limit.largest_gt_instances,
        )
    metrics.update(
        model=model.describe(),
        dataset={"uri": fetched.uri, "hash": fetched.content_hash},
        split="val",
        detection_limit=limit.as_dict(),
        seconds=round(time.monotonic() - started, 3),
    )
    uri = storage.write_bytes(
        storage.join(output, "metrics.json"), json.dumps(metrics, indent=2).encode()
    )
    segm, bbox, area = metrics["segm"], metrics["bbox"], metrics["area_ratio_error"]
    create_table_artifact(
        metrics_table(metrics),
        key="evaluate-model-metrics",
        description=(
            f"{model.identity} on {dataset} (val, {metrics['images']} images): "
            f"segm AP {segm['AP']}, AP50 {segm['AP50']}, AP75 {segm['AP75']}; "
            f"bbox AP {bbox['AP']}; mean area-ratio error {area['mean_mae_pp']:.3f} pp"
        ),
    )
    return {**metrics, "metrics_uri": uri}
