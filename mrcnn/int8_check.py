"""The INT8 self-check: an INT8 model against its float32 original on held-out images.

Three numbers decide whether a quantized model may replace the float32 one:

- **area-ratio difference**, per class: the coverage of a class in an image (the union of its
  instance masks over the image's pixels, in percent) from INT8 minus float32's, in
  percentage points (pp); per class the mean and the largest absolute difference over the
  images. The tolerance applies to each class's mean: the nightly tables report coverage.
- **mask AP50 drop**: COCO mask AP at IoU 0.5 of float32 minus INT8's. Scored against the
  ground truth where the held-out images have it; otherwise float32's own detections are the
  ground truth (float32 scores 1 by definition, so the drop is 1 - INT8's AP50).
- **matched share**: the share of float32's instances that INT8 finds too (same class, mask
  IoU >= 0.5, each matched once, INT8's by descending score).

Where float32's detections are the reference (the matched share, and AP50 without ground
truth), instances whose mask is empty on both sides of the comparison are left out: they
cover no pixel, so they change no area ratio, and an empty mask matches nothing (its IoU is 0).

`Tolerances` holds the limits; `check_int8` measures and judges. numpy and `mrcnn.evaluation`
only: the runtimes come in as `detect`-like callables.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from mrcnn.boxes import extract_bboxes
from mrcnn.errors import InvalidInput, InvalidSetting
from mrcnn.evaluation import DetectionEvaluator, compute_matches

Detect = Callable[[Sequence[np.ndarray]], list[dict[str, np.ndarray]]]
GROUND_TRUTH, FLOAT32_DETECTIONS = "ground truth", "float32 detections"


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """The most an INT8 model may differ from float32 and still pass.

    Attributes:
        area_difference_pp: the largest mean absolute area-ratio difference of any class, in
            percentage points.
        ap50_drop: the largest drop of mask AP50 (float32's minus INT8's).
        matched_share: the least share of float32's instances INT8 must find.
    """

    area_difference_pp: float = 0.3
    ap50_drop: float = 0.02
    matched_share: float = 0.9

    def __post_init__(self) -> None:
        if self.area_difference_pp < 0 or self.ap50_drop < 0:
            raise InvalidSetting(
                f"tolerances must be >= 0, got area difference "
                f"{self.area_difference_pp} pp and AP50 drop {self.ap50_drop}"
            )
        if not 0.0 <= self.matched_share <= 1.0:
            raise InvalidSetting(f"matched share must be in [0, 1], got {self.matched_share}")


@dataclasses.dataclass(frozen=True)
class CheckImage:
    """One held-out image, with its ground truth where there is one.

    Attributes:
        image: RGB ``[H, W, 3]``.
        class_ids: int ``[G]`` ground-truth class ids (None: no ground truth).
        masks: bool ``[H, W, G]`` ground-truth masks (None with ``class_ids``).
    """

    image: np.ndarray
    class_ids: np.ndarray | None = None
    masks: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class ClassDifference:
    """A class's area-ratio difference over the held-out images, in percentage points."""

    name: str
    mean_pp: float
    max_pp: float


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What the check measured, and its verdict.

    Attributes:
        images: held-out images compared.
        reference: what AP50 is scored against: ``"ground truth"`` or
            ``"float32 detections"``.
        classes: each class's area-ratio difference.
        ap50_float32, ap50_int8: mask AP50 of each (None: nothing to score against).
        matched_share: share of float32's instances INT8 finds (None: float32 found none).
        instances_float32, instances_int8: instances with a non-empty mask each detected
            over the images.
        seconds_float32, seconds_int8: time each spent detecting the images, on this machine.
        tolerances: the limits judged against.
        failures: one sentence per limit exceeded or measure that could not be taken.
    """

    images: int
    reference: str
    classes: tuple[ClassDifference, ...]
    ap50_float32: float | None
    ap50_int8: float | None
    matched_share: float | None
    instances_float32: int
    instances_int8: int
    seconds_float32: float
    seconds_int8: float
    tolerances: Tolerances
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def area_difference_pp(self) -> float:
        """The largest per-class mean difference (what the tolerance judges)."""
        return max((c.mean_pp for c in self.classes), default=0.0)

    @property
    def mean_area_difference_pp(self) -> float:
        """The per-class mean differences, averaged over the classes."""
        return float(np.mean([c.mean_pp for c in self.classes])) if self.classes else 0.0

    @property
    def ap50_drop(self) -> float | None:
        if self.ap50_float32 is None or self.ap50_int8 is None:
            return None
        return self.ap50_float32 - self.ap50_int8

    def summary(self) -> str:
        """One line: the verdict and the three numbers."""
        drop = "n/a" if self.ap50_drop is None else f"{self.ap50_drop:+.3f}"
        share = "n/a" if self.matched_share is None else f"{self.matched_share:.3f}"
        verdict = "passed" if self.passed else "failed: " + "; ".join(self.failures)
        return (
            f"INT8 check on {self.images} images {verdict} (area-ratio difference, worst "
            f"class mean {self.area_difference_pp:.3f} pp, limit "
            f"{self.tolerances.area_difference_pp}; mask AP50 drop {drop} against "
            f"{self.reference}, limit {self.tolerances.ap50_drop}; float32 instances "
            f"matched {share}, limit {self.tolerances.matched_share})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with the derived numbers (``passed``, ``area_difference_pp`` ...)."""
        return {
            **dataclasses.asdict(self),
            "passed": self.passed,
            "area_difference_pp": self.area_difference_pp,
            "mean_area_difference_pp": self.mean_area_difference_pp,
            "ap50_drop": self.ap50_drop,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CheckReport:
        fields = {field.name for field in dataclasses.fields(cls)}
        kept = {key: value for key, value in values.items() if key in fields}
        kept["classes"] = tuple(ClassDifference(**c) for c in values["classes"])
        kept["tolerances"] = Tolerances(**values["tolerances"])
        kept["failures"] = tuple(values["failures"])
        return cls(**kept)


def coverage_pp(masks: np.ndarray, class_ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class ``1..num_classes``, the percentage of the image its masks' union covers."""
    masks = np.asarray(masks, bool)
    pixels = masks.shape[0] * masks.shape[1]
    covered = np.zeros(num_classes)
    for index in range(num_classes):
        chosen = np.asarray(class_ids) == index + 1
        if chosen.any():
            covered[index] = np.any(masks[..., chosen], axis=-1).sum() * 100.0 / pixels
    return covered


def check_int8(
    float32: Detect,
    int8: Detect,
    images: Iterable[CheckImage],
    class_names: Sequence[str],
    tolerances: Tolerances = Tolerances(),
    batch_size: int = 1,
) -> CheckReport:
    """Detect the held-out ``images`` with both models and judge INT8 by ``tolerances``.

    Args:
        float32, int8: ``detect``-like callables (a list of RGB images in, one result per
            image out, as `mrcnn.model.MaskRCNN.detect`).
        images: the held-out images; ground truth is used when every image has it.
        class_names: without the background, in class-id order.
        batch_size: images per call of each callable.
    """
    names = list(class_names)
    chunk: list[CheckImage] = []
    differences: list[np.ndarray] = []
    pairs: list[tuple[CheckImage, dict, dict]] = []
    seconds = [0.0, 0.0]
    for item in _then_none(images):
        if item is not None:
            chunk.append(item)
        if chunk and (item is None or len(chunk) == batch_size):
            arrays = [c.image for c in chunk]
            started = time.perf_counter()
            reference = float32(arrays)
            seconds[0] += time.perf_counter() - started
            started = time.perf_counter()
            quantized = int8(arrays)
            seconds[1] += time.perf_counter() - started
            for sample, ref, out in zip(chunk, reference, quantized):
                differences.append(
                    coverage_pp(out["masks"], out["class_ids"], len(names))
                    - coverage_pp(ref["masks"], ref["class_ids"], len(names))
                )
                pairs.append((sample, _lean(ref), _lean(out)))
            chunk = []
    if not pairs:
        raise InvalidInput("the INT8 check needs at least one held-out image")
    absolute = np.abs(np.stack(differences))
    classes = tuple(
        ClassDifference(name, float(absolute[:, i].mean()), float(absolute[:, i].max()))
        for i, name in enumerate(names)
    )
    with_truth = all(sample.class_ids is not None for sample, _, _ in pairs)
    ap50_float, ap50_int8 = _ap50(pairs, names, with_truth)
    share, found, detected = _matched_share(pairs)
    report = CheckReport(
        images=len(pairs),
        reference=GROUND_TRUTH if with_truth else FLOAT32_DETECTIONS,
        classes=classes,
        ap50_float32=ap50_float,
        ap50_int8=ap50_int8,
        matched_share=share,
        instances_float32=found,
        instances_int8=detected,
        seconds_float32=seconds[0],
        seconds_int8=seconds[1],
        tolerances=tolerances,
        failures=(),
    )
    return dataclasses.replace(report, failures=_failures(report))


def _then_none(items: Iterable[CheckImage]) -> Iterable[CheckImage | None]:
    yield from items
    yield None  # flushes the last, partial batch


def _lean(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: result[key] for key in ("rois", "class_ids", "scores", "masks")}


def _visible(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The instances of a result whose mask covers at least one pixel."""
    keep = np.asarray(result["masks"], bool).any(axis=(0, 1))
    return {
        key: (value[..., keep] if key == "masks" else value[keep]) for key, value in result.items()
    }


def _ap50(
    pairs: list[tuple[CheckImage, dict, dict]], names: list[str], with_truth: bool
) -> tuple[float | None, float | None]:
    """Mask AP50 of float32 and INT8 against the ground truth, or INT8's against float32's."""
    scored = [DetectionEvaluator(["BG", *names]) for _ in range(2 if with_truth else 1)]
    for index, (sample, ref, out) in enumerate(pairs):
        if with_truth:
            scored[0].process(index, sample.class_ids, sample.masks, ref)
            scored[1].process(index, sample.class_ids, sample.masks, out)
        else:
            ref, out = _visible(ref), _visible(out)
            scored[0].process(index, ref["class_ids"], ref["masks"], out)
    values = [evaluator.evaluate()["segm"]["AP50"] for evaluator in scored]
    if with_truth:
        return values[0], values[1]
    return (1.0 if values[0] is not None else None), values[0]


def _matched_share(pairs: list[tuple[CheckImage, dict, dict]]) -> tuple[float | None, int, int]:
    matched = found = detected = 0
    for _, ref, out in pairs:
        ref, out = _visible(ref), _visible(out)
        found += len(ref["class_ids"])
        detected += len(out["class_ids"])
        if len(ref["class_ids"]):
            gt_match, _, _ = compute_matches(
                extract_bboxes(ref["masks"]),
                ref["class_ids"],
                ref["masks"],
                out["rois"],
                out["class_ids"],
                out["scores"],
                out["masks"],
                iou_threshold=0.5,
            )
            matched += int(np.sum(gt_match > -1))
    return (matched / found if found else None), found, detected


def _failures(report: CheckReport) -> tuple[str, ...]:
    limits = report.tolerances
    failures = []
    worst = max(report.classes, key=lambda c: c.mean_pp, default=None)
    if worst is not None and worst.mean_pp > limits.area_difference_pp:
        failures.append(
            f"class {worst.name!r} differs by {worst.mean_pp:.3f} pp on average "
            f"(limit {limits.area_difference_pp})"
        )
    if report.instances_float32 == 0:
        failures.append("float32 detected nothing on the held-out images: nothing to compare")
    drop = report.ap50_drop
    if drop is None and report.instances_float32:
        failures.append(f"mask AP50 is undefined against the {report.reference}")
    elif drop is not None and drop > limits.ap50_drop:
        failures.append(f"mask AP50 drops by {drop:.3f} (limit {limits.ap50_drop})")
    share = report.matched_share
    if share is not None and share < limits.matched_share:
        failures.append(
            f"INT8 finds {share:.3f} of float32's instances (limit {limits.matched_share})"
        )
    return tuple(failures)
