"""Learning a real dataset in a time budget: ours against torchvision's Mask R-CNN, beside Otsu
and Otsu + watershed, in one run.

    python -m benchmarks.learning --dataset PATH [--format canonical|mask-folders|…]
        [--class NAME] [--minutes 15] [--recipe docs/examples/nuclei.yaml] [--override JSON]
        [--peer auto|none] [--peer-backbone resnet18|resnet50] [--peer-heads default|light]
        [--train-images N] [--val-images N] [--min-score 0.05]

(`benchmarks.learning` hands every run with `--dataset` to this module.) A `--format` other than
`canonical` converts `PATH` first, as `mrcnn-pipeline convert --format FORMAT` does, into a
temporary canonical dataset with the converter's train/val split (a hash of each image's path);
`canonical` takes a converted dataset as it is. `--train-images N` / `--val-images N` keep the
first N images of a split (smoke runs). The dataset must have one class: both baselines
separate one bright class from a dark background.

- **ours**: the training config `--recipe` (default `docs/examples/nuclei.yaml`: ResNet-18 with
  the light heads from random weights, trainable batch norm, AdamW 1e-3 with a 50-step
  warmup, batch 4, ground-truth boxes among the proposals, flips and quarter turns, the
  learning rate ÷ 10 for the last fifth of the budget) with `auto_config`: image size,
  anchors, instance limits, ROIs and mean pixel chosen from the train split (the table goes
  into the JSON). It trains in the pipeline's own training function
  (`tasks.training.process.run_training`, in the training process's environment) for
  `--minutes` on the clock, data loading and model building included, as `mrcnn-pipeline
  train` does.
- **torchvision**: Mask R-CNN on a ResNet-18 FPN (`--peer-backbone resnet50`: its default
  ResNet-50), random weights, trainable batch norm, torchvision's heads (`--peer-heads light`:
  sized as ours), with ours' training crops (the same `load_image_gt`, augmentation and
  seeds), batch, anchors, sampled ROIs and positive share, proposals, detections per image,
  optimizer, warmup, stages, budget and precision (bfloat16 autocast where ours trains in
  mixed_bfloat16). Its images are normalised by its own ImageNet statistics.

Each engine runs in its own child process, ours first, then detects every val image at its
own size (no rescaling; ours pads to multiples of 64) in float32. Every predictor is scored by
the same code on the same images:

- COCO segm AP50 and AP (`mrcnn.evaluation.DetectionEvaluator`: `maxDets` raised to the
  fullest val image) and matterport's mask mAP@0.5, from the detections scoring at least
  `--min-score` (0.05: AP ranks detections, low scores included, as COCO scores them);
- coverage (the union of the masks, percent of the image) MAE with its bootstrap 95 %
  interval, bias and count error (`mrcnn.coverage`), and the paired difference to Otsu's MAE,
  from the detections scoring at least the recipe's `DETECTION_MIN_CONFIDENCE` (what
  `mrcnn-pipeline evaluate` and the nightly runs keep).

Baselines on the same images: **Otsu**'s threshold (coverage; connected components as the
count) and **Otsu + watershed** (`mrcnn.baselines.otsu_watershed`, markers at least half the
train split's median object size apart: coverage, count, and instance AP with every instance
scored 1). The JSON also names the CPU, the load at start and end, the split's image ids and
each val image's figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.learning import step_figures
from benchmarks.train_step import (
    PEER_BACKBONES,
    PEER_HEADS,
    torch_batch,
    torch_model,
    torch_optimizer,
)
from mrcnn import coverage, hardware
from mrcnn.augment import Augmentation
from mrcnn.baselines import instance_masks, otsu_prediction, otsu_watershed
from mrcnn.boxes import extract_bboxes
from mrcnn.config import Config
from mrcnn.evaluation import DetectionEvaluator
from mrcnn.precision import training_precision
from tasks.annotations.registry import NAMES
from tasks.training.auto_config import auto_choices, with_auto_config
from tasks.training.config import TrainingConfig, load_training_config
from tasks.training.data import load_split
from tasks.training.process import run_training, training_environment
from tasks.training.request import InitialWeights, TrainingRequest
from tasks.training.runs import list_checkpoints

ENGINES = ("ours", "torchvision")
RECIPE = common.REPO_ROOT / "docs" / "examples" / "nuclei.yaml"
CANONICAL = "canonical"
SPLITS = ("train", "val")
NOTES = [
    "minutes: each engine's wall-clock training budget, counted from the start of its training "
    "(data loading and model building included, as mrcnn-pipeline train counts it); the step "
    "that crosses a stage's end is finished",
    "first_step_seconds: from that start to the end of the first step; seconds_per_step: "
    "between consecutive step ends (data loading included), the first two steps left out",
    "AP figures from detections scoring >= min_score; coverage and counts from those scoring "
    ">= coverage_score; every image at its own size, float32",
    "coverage_mae_ci95_pp and minus_otsu_ci95_pp: percentile bootstrap over val images, "
    "2000 resamples, seed 0, paired by image (mrcnn.coverage)",
    "torchvision keeps its own detection post-processing (NMS 0.5, per-level proposal limits) "
    "and image normalisation; every other setting follows ours' config (settings.config)",
]


# ---------------------------------------------------------------------- the dataset
class BadInput(Exception):
    """The dataset or the recipe cannot be used (the message names it)."""


def canonical_dataset(path: str, fmt: str, class_name: str | None, work: Path) -> Path:
    """The canonical dataset to train on: `path` itself, or `path` converted into `work`.

    Raises:
        ValueError: a canonical dataset lacks a split, or the converter refused the input
            (its one-line error, naming `path`).
    """
    if fmt == CANONICAL:
        root = Path(path)
        for split in SPLITS:
            if not (root / "annotations" / f"{split}.json").is_file():
                raise ValueError(
                    f"--dataset {path} has no annotations/{split}.json (convert it "
                    "with mrcnn-pipeline convert, or give its --format)"
                )
        return root
    root = work / "dataset"
    command = [
        sys.executable,
        "-m",
        "mrcnn_pipeline.cli",
        "convert",
        "--format",
        fmt,
        "--input",
        path,
        "--output",
        str(root),
        "--json",
        *(["--class", class_name] if class_name else []),
    ]
    print(f"[bench] converting {path} ({fmt})", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=common.REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        # The CLI's own one-line error (`mrcnn-pipeline convert: error: …`), else the tail.
        errors = [
            line.split(" error: ", 1)[1]
            for line in done.stderr.splitlines()
            if line.startswith("mrcnn-pipeline") and " error: " in line
        ]
        raise ValueError(
            f"converting --dataset {path} ({fmt}) failed: "
            f"{errors[-1] if errors else common.plain(done.stderr[-500:])}"
        )
    return root


def subset(root: Path, limits: dict[str, int | None], work: Path) -> Path:
    """`root` with only the first `limits[split]` images of each split (all where None); the
    images folder is linked, not copied."""
    if not any(limits.values()):
        return root
    kept = work / "subset"
    (kept / "annotations").mkdir(parents=True)
    (kept / "images").symlink_to((root / "images").resolve(), target_is_directory=True)
    for split in SPLITS:
        document = read_split(root, split)
        images = document["images"][: limits[split]] if limits[split] else document["images"]
        ids = {image["id"] for image in images}
        document.update(
            images=images, annotations=[a for a in document["annotations"] if a["image_id"] in ids]
        )
        (kept / "annotations" / f"{split}.json").write_text(json.dumps(document))
    return kept


def check_splits(root: Path, path: str) -> None:
    """Raises ValueError when a split has no image (nothing to train on, or to score)."""
    for split in SPLITS:
        if not read_split(root, split)["images"]:
            raise ValueError(f"the {split} split of --dataset {path} has no images")


def read_split(root: Path, split: str) -> dict[str, Any]:
    return json.loads((root / "annotations" / f"{split}.json").read_text(encoding="utf-8"))


def training_setup(
    recipe: str, root: Path, minutes: float, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The recipe with the dataset's classes, the budget, `overrides` (kept as the user's) and
    the values auto_config chooses: `{training, auto_config}`, as plain data for the children.
    """
    training = load_training_config(recipe)
    classes = [
        c["name"] for c in sorted(read_split(root, "train")["categories"], key=lambda c: c["id"])
    ]
    if len(classes) != 1:
        raise ValueError(
            f"the dataset has {len(classes)} classes {classes}; this benchmark "
            "scores one class (Otsu's baselines separate one bright class)"
        )
    data = {
        **training.to_dict(),
        "classes": classes,
        "minutes": minutes,
        "auto_config": True,
        "config": {**training.config, **overrides},
    }
    training = TrainingConfig.from_dict(data, f"--recipe {recipe}")
    choices = [choice.to_dict() for choice in auto_choices(training, str(root))]
    return {"training": with_auto_config(training, choices).to_dict(), "auto_config": choices}


def load_setup(path: str) -> tuple[TrainingConfig, Config]:
    """The training config and the mrcnn Config of a `training_setup` file."""
    training = TrainingConfig.from_dict(json.loads(Path(path).read_text())["training"])
    return training, training.mrcnn_config()


# ---------------------------------------------------------------------- scoring
class Scores:
    """One predictor's figures on the val images: AP, and per-image coverage and counts."""

    def __init__(self, class_names: list[str], coverage_score: float) -> None:
        self.evaluator = DetectionEvaluator(class_names)
        self.coverage_score = coverage_score
        self.coverage_pct: list[float] = []
        self.instances: list[int] = []
        self.ranked = 0  # images with instances to rank (AP)

    def process(
        self,
        image_id: int,
        gt_class_ids: np.ndarray,
        gt_masks: np.ndarray,
        result: dict[str, np.ndarray],
    ) -> None:
        """Add one image's `detect()` result: all of it to AP, the detections scoring at least
        `coverage_score` to coverage and count."""
        self.evaluator.process(image_id, gt_class_ids, gt_masks, result)
        self.ranked += 1
        kept = np.asarray(result["scores"]) >= self.coverage_score
        self.add_coverage(coverage_pct(np.asarray(result["masks"])[..., kept]), int(kept.sum()))

    def add_coverage(self, percent: float, instances: int) -> None:
        """Add one image's coverage and count only (a predictor without instances to rank)."""
        self.coverage_pct.append(float(percent))
        self.instances.append(int(instances))

    def summary(self) -> dict[str, Any]:
        """AP figures (when any image went through `process`) and the per-image lists."""
        per_image = {"per_image": {"coverage_pct": self.coverage_pct, "instances": self.instances}}
        if not self.ranked:
            return per_image
        metrics = self.evaluator.evaluate()
        figures = {
            "segm_AP50": metrics["segm"]["AP50"],
            "segm_AP": metrics["segm"]["AP"],
            "mask_mAP50": metrics["mAP50"],
            "bbox_AP": metrics["bbox"]["AP"],
        }
        return {
            **{key: None if value is None else round(value, 4) for key, value in figures.items()},
            "coco_max_dets": metrics["coco_max_dets"],
            **per_image,
        }


def coverage_pct(masks: np.ndarray) -> float:
    """Percent of the image that the union of `[H, W, N]` masks covers."""
    return 100.0 * float(np.asarray(masks).any(axis=2).mean()) if masks.shape[-1] else 0.0


def detect_and_score(detect, val, coverage_score: float, batch: int) -> dict[str, Any]:
    """Run `detect` (a list of images → `detect()` results) over the val images, `batch` at a
    time, and score them; also the seconds per image of `detect` alone."""
    scores = Scores(val.class_names, coverage_score)
    ids, seconds = list(val.image_ids), 0.0
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        images = [val.load_image(i) for i in chunk]
        began = time.perf_counter()
        results = detect(images)
        seconds += time.perf_counter() - began
        for image_id, result in zip(chunk, results):
            masks, class_ids = val.load_mask(image_id)
            scores.process(int(val.image_info[image_id]["id"]), class_ids, masks, result)
    return {**scores.summary(), "detect_seconds_per_image": round(seconds / len(ids), 3)}


def coverage_figures(
    predicted: list[float],
    counts: list[int],
    truth: np.ndarray,
    true_counts: np.ndarray,
    otsu: np.ndarray | None,
) -> dict[str, Any]:
    """Coverage MAE with its interval, bias, count error; the paired difference to Otsu's."""
    predicted_pct = np.asarray(predicted, dtype=float)
    error = coverage.coverage_error(predicted_pct, truth)
    counted = coverage.count_error(np.asarray(counts, dtype=float), true_counts)
    relative = counted.median_relative
    figures = {
        "coverage_mae_pp": round(error.mae_pp, 3),
        "coverage_mae_ci95_pp": [round(v, 3) for v in error.mae_interval_pp.as_list()],
        "coverage_bias_pp": round(error.bias_pp, 3),
        "count_mean_absolute": round(counted.mean_absolute, 2),
        "count_median_relative": None if relative is None else round(relative, 3),
    }
    if otsu is not None:
        against = coverage.compare(predicted_pct, otsu, truth)
        figures.update(
            minus_otsu_pp=round(against.difference_pp, 3),
            minus_otsu_ci95_pp=[round(v, 3) for v in against.interval_pp.as_list()],
            against_otsu=against.verdict,
        )
    return figures


def steps_per_minute(figures: dict[str, Any]) -> float | None:
    median = (figures.get("seconds_per_step") or {}).get("median")
    return round(60.0 / median, 3) if median else None


# ---------------------------------------------------------------------- ours
def run_ours(setup_path: str, root: str, min_score: float) -> dict[str, Any]:
    import keras

    from mrcnn.model import MaskRCNN

    training, config = load_setup(setup_path)
    ends: list[float] = []
    step_clock = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter())
    )
    with tempfile.TemporaryDirectory(prefix="learning-ours-") as work:
        request = TrainingRequest(
            config=config.to_dict(),
            classes=training.classes,
            stages=[stage.to_dict() for stage in training.resolved_stages()],
            dataset={"uri": root, "hash": ""},
            dataset_root=root,
            run_dir=f"{work}/run",
            work_dir=f"{work}/work",
            init=InitialWeights(),
            history=[],
            budget_seconds=60.0 * training.minutes,
        )
        started = time.perf_counter()  # run_training's own clock starts with it
        outcome = run_training(request, lambda event: None, [step_clock], verbose=0)
        train_seconds = time.perf_counter() - started
        checkpoint = list_checkpoints(request.run_dir)[outcome["epoch"]]
        detecting = Config.from_dict({**config.to_dict(), "DETECTION_MIN_CONFIDENCE": min_score})
        detector = MaskRCNN("inference", detecting, f"{work}/detect")
        detector.load_weights(checkpoint)
        val = load_split(root, "val", training.classes, config)
        scored = detect_and_score(
            detector.detect, val, config.DETECTION_MIN_CONFIDENCE, config.BATCH_SIZE
        )
    history = outcome["history"]
    figures = step_figures(ends, started)
    return {
        **figures,
        "steps_per_minute": steps_per_minute(figures),
        "train_seconds": round(train_seconds, 1),
        "epochs": outcome["epoch"],
        "last_loss": round(history[-1]["loss"], 4) if history else None,
        "precision": history[-1]["precision"] if history else None,
        **scored,
        "threads": common.tf_threads(),
    }


# ---------------------------------------------------------------------- torchvision
def run_torchvision(
    setup_path: str, root: str, backbone: str, heads: str, min_score: float
) -> dict[str, Any]:
    """Trains as `run_training` trains ours: stages on the clock, warmup, the same crops."""
    import torch

    torch.set_num_threads(hardware.usable_cores())
    torch.manual_seed(0)
    training, config = load_setup(setup_path)
    bf16 = training_precision(config.TRAINING_PRECISION).precision == "mixed_bfloat16"
    budget, stages = 60.0 * training.minutes, training.resolved_stages()
    started = time.perf_counter()
    train = load_split(root, "train", training.classes, config)
    model = torch_model(heads, config, backbone, min_score).train()
    optimizer, _ = torch_optimizer(model, config)
    ends: list[float] = []
    loss = float("nan")
    for number, stage in enumerate(stages):
        ends_at = stage.until * budget
        if time.perf_counter() - started >= ends_at and number < len(stages) - 1:
            continue  # its share of the budget went to building (ours skips it too)
        augmentation = Augmentation.from_dict(stage.augmentation) if stage.augmentation else None
        while not ends or ends[-1] - started <= ends_at:
            # ours' WarmupSchedule: the stage's rate, ramped over the first WARMUP_STEPS steps
            rate = stage.learning_rate * min(1.0, (len(ends) + 1) / max(config.WARMUP_STEPS, 1))
            for group in optimizer.param_groups:
                group["lr"] = rate
            first = len(ends) * config.BATCH_SIZE
            images, targets = torch_batch(
                train, config, range(first, first + config.BATCH_SIZE), config.SEED, augmentation
            )
            autocast = (
                torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            )
            with autocast:
                total = sum(model(images, targets).values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(config.GRADIENT_CLIP_NORM))
            optimizer.step()
            loss = float(total.detach())
            ends.append(time.perf_counter())
    train_seconds = time.perf_counter() - started
    val = load_split(root, "val", training.classes, config)
    scored = detect_and_score(torch_detector(model), val, config.DETECTION_MIN_CONFIDENCE, 1)
    figures = step_figures(ends, started)
    return {
        **figures,
        "steps_per_minute": steps_per_minute(figures),
        "train_seconds": round(train_seconds, 1),
        "last_loss": round(loss, 4),
        "precision": "bfloat16 autocast" if bf16 else "float32",
        "heads": heads,
        **scored,
        "threads": {
            "intra_op": torch.get_num_threads(),
            "inter_op": torch.get_num_interop_threads(),
        },
    }


def torch_detector(model):
    """A `detect()`-like function of a torchvision model, each image at its own size."""
    import torch

    model.eval()

    def detect(images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        results = []
        with torch.inference_mode():
            for image in images:
                # torchvision rescales an image to its transform's sizes (the training crop);
                # set to the image's own sides, it stays at scale 1, as ours detects.
                height, width = image.shape[:2]
                model.transform.min_size = (min(height, width),)
                model.transform.max_size = max(height, width)
                output = model([common.to_torch_image(image)])[0]
                results.append(common.from_torch_output(output))
        return results

    return detect


# ---------------------------------------------------------------------- baselines
def watershed_min_distance(root: Path) -> int:
    """Half the train split's median object size (√(h·w) of the boxes), at least 1 pixel."""
    boxes = [a["bbox"] for a in read_split(root, "train")["annotations"] if not a.get("iscrowd")]
    sides = [np.sqrt(max(w, 1) * max(h, 1)) for _, _, w, h in boxes]
    return max(1, int(round(float(np.median(sides)) / 2))) if sides else 1


def score_baselines(
    root: Path, training: TrainingConfig, config: Config, min_distance: int
) -> dict[str, Any]:
    """The truth and both baselines on the val images: `{truth, otsu, otsu_watershed}`."""
    val = load_split(str(root), "val", training.classes, config)
    otsu = Scores(val.class_names, 0.0)
    watershed = Scores(val.class_names, 0.0)
    truth: dict[str, list] = {"image_id": [], "file_name": [], "coverage_pct": [], "instances": []}
    for image_id in val.image_ids:
        info = val.image_info[image_id]
        image = val.load_image(image_id)
        masks, class_ids = val.load_mask(image_id)
        truth["image_id"].append(int(info["id"]))
        truth["file_name"].append(info["file_name"])
        truth["coverage_pct"].append(coverage_pct(masks))  # crowd regions count as their class
        truth["instances"].append(int((class_ids > 0).sum()))
        found = otsu_prediction(image)
        otsu.add_coverage(found.coverage_pct, found.objects)
        instances = instance_masks(otsu_watershed(image, min_distance))
        count = instances.shape[-1]
        watershed.process(
            int(info["id"]),
            class_ids,
            masks,
            {
                "rois": extract_bboxes(instances),
                "class_ids": np.ones(count, np.int32),
                "scores": np.ones(count, np.float32),
                "masks": instances,
            },
        )
    return {"truth": truth, "otsu": otsu.summary(), "otsu_watershed": watershed.summary()}


# ---------------------------------------------------------------------- parent and CLI
SHARED_KEYS = (
    "BACKBONE",
    "IMAGE_RESIZE_MODE",
    "IMAGE_MIN_DIM",
    "IMAGE_MAX_DIM",
    "IMAGES_PER_GPU",
    "RPN_ANCHOR_SCALES",
    "RPN_ANCHOR_RATIOS",
    "TRAIN_ROIS_PER_IMAGE",
    "ROI_POSITIVE_RATIO",
    "MAX_GT_INSTANCES",
    "POST_NMS_ROIS_TRAINING",
    "POST_NMS_ROIS_INFERENCE",
    "DETECTION_MAX_INSTANCES",
    "DETECTION_MIN_CONFIDENCE",
    "MEAN_PIXEL",
    "OPTIMIZER",
    "LEARNING_RATE",
    "WARMUP_STEPS",
    "WEIGHT_DECAY",
    "GRADIENT_CLIP_NORM",
    "TRAIN_BN",
    "TRAINING_PRECISION",
    "SEED",
)


def run_job(args: argparse.Namespace) -> dict[str, Any]:
    if args.engine == "ours":
        result = run_ours(args.setup, args.root, args.min_score)
        backbone = load_setup(args.setup)[1].BACKBONE
    else:
        result = run_torchvision(
            args.setup, args.root, args.peer_backbone, args.peer_heads, args.min_score
        )
        backbone = args.peer_backbone
    environment = {name: os.environ[name] for name in common.THREAD_VARIABLES if name in os.environ}
    return {
        "engine": args.engine,
        "backbone": backbone,
        **result,
        "environment": environment,
        "peak_rss_mib": common.peak_rss_mib(),
    }


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    document = common.header("learning", argv)
    document["hardware"] = hardware.detect(include_gpus=False).describe()
    document["load_average_at_start"] = common.load_average()
    peer = args.peer == "auto" and common.peer_available()
    with tempfile.TemporaryDirectory(prefix="learning-") as folder:
        work = Path(folder)
        try:
            root = subset(
                canonical_dataset(args.dataset, args.format, args.class_name, work),
                {"train": args.train_images, "val": args.val_images},
                work,
            )
            check_splits(root, args.dataset)
            setup = training_setup(args.recipe, root, args.minutes, {"SEED": 0, **args.overrides})
        except (ValueError, FileNotFoundError) as error:  # the dataset's or the recipe's
            raise BadInput(str(error)) from None
        setup_path = work / "setup.json"
        setup_path.write_text(json.dumps(setup))
        training, config = load_setup(str(setup_path))
        values = config.to_dict()
        shared = {key: values[key] for key in SHARED_KEYS}
        min_distance = watershed_min_distance(root)
        document["settings"] = {
            "dataset": args.dataset,
            "format": args.format,
            "recipe": args.recipe,
            "minutes": args.minutes,
            "min_score": args.min_score,
            "coverage_score": config.DETECTION_MIN_CONFIDENCE,
            "overrides": args.overrides,
            "train_images": len(read_split(root, "train")["images"]),
            "val_images": len(read_split(root, "val")["images"]),
            "stages": [stage.to_dict() for stage in training.resolved_stages()],
            "config": shared,
            "watershed_min_distance": min_distance,
            "peer": "torchvision"
            if peer
            else ("none (--peer none)" if args.peer == "none" else "none (not installed)"),
            "peer_model": f"{args.peer_backbone} FPN, {args.peer_heads} heads" if peer else None,
        }
        document["auto_config"] = setup["auto_config"]
        document["split"] = {
            split: [image["id"] for image in read_split(root, split)["images"]] for split in SPLITS
        }
        document["notes"] = NOTES
        child_args = [
            "--dataset",
            args.dataset,
            "--setup",
            str(setup_path),
            "--root",
            str(root),
            "--min-score",
            str(args.min_score),
            "--peer-backbone",
            args.peer_backbone,
            "--peer-heads",
            args.peer_heads,
        ]
        # Ours trains in the environment of mrcnn-pipeline train's process (oneDNN on).
        results = [
            {
                "engine": engine,
                **common.run_child(
                    "benchmarks.learning_real",
                    ["--engine", engine, *child_args],
                    environment=training_environment(os.environ) if engine == "ours" else None,
                ),
            }
            for engine in ["ours", *(["torchvision"] if peer else [])]
        ]
        print("[bench] scoring the baselines", file=sys.stderr, flush=True)
        baselines = score_baselines(root, training, config, min_distance)
    document["results"] = results
    document["baselines"] = {name: baselines[name] for name in ("otsu", "otsu_watershed")}
    document["per_image"] = tabulate(baselines["truth"], results, document["baselines"])
    document["comparison"] = comparison(results, document["baselines"])
    document["load_average_at_end"] = common.load_average()
    return document


def tabulate(
    truth: dict[str, list], results: list[dict[str, Any]], baselines: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Adds the coverage figures to every predictor (in place); returns the per-image columns:
    the val images' ids, file names, true coverage and counts, and each predictor's."""
    true_pct = np.asarray(truth["coverage_pct"])
    true_counts = np.asarray(truth["instances"], dtype=float)
    otsu_pct = np.asarray(baselines["otsu"]["per_image"]["coverage_pct"])
    columns = {**truth}
    predictors = [(r["engine"], r) for r in results] + list(baselines.items())
    for name, figures in predictors:
        per_image = figures.pop("per_image", None)
        if per_image is None:  # a child that failed
            continue
        against = None if name == "otsu" else otsu_pct
        figures.update(
            coverage_figures(
                per_image["coverage_pct"], per_image["instances"], true_pct, true_counts, against
            )
        )
        columns[name] = {
            "coverage_pct": [round(v, 3) for v in per_image["coverage_pct"]],
            "instances": per_image["instances"],
        }
    columns["coverage_pct"] = [round(v, 3) for v in columns["coverage_pct"]]
    return columns


def comparison(
    results: list[dict[str, Any]], baselines: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Ours against torchvision (steps per minute, mask mAP@0.5) and Otsu (coverage MAE);
    None where one is missing."""
    ours = next((r for r in results if r["engine"] == "ours"), {})
    theirs = next((r for r in results if r["engine"] == "torchvision"), {})
    return {
        "steps_per_minute_ours_over_torchvision": common.ratio(
            ours.get("steps_per_minute"), theirs.get("steps_per_minute")
        ),
        "mask_mAP50_ours_minus_torchvision": difference(
            ours.get("mask_mAP50"), theirs.get("mask_mAP50")
        ),
        "coverage_mae_ours_over_otsu": common.ratio(
            ours.get("coverage_mae_pp"), baselines["otsu"].get("coverage_mae_pp")
        ),
    }


def difference(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else round(ours - theirs, 4)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.learning",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="PATH",
        help="a canonical dataset, or a folder of --format to convert",
    )
    parser.add_argument(
        "--format",
        default=CANONICAL,
        choices=(CANONICAL, *NAMES),
        help="the layout of PATH (default: canonical, converted already)",
    )
    parser.add_argument(
        "--class",
        dest="class_name",
        metavar="NAME",
        help="the converter's --class (mask-folders, label-images)",
    )
    parser.add_argument(
        "--minutes", type=float, default=15.0, help="training budget per engine (0.5: smoke run)"
    )
    parser.add_argument(
        "--recipe",
        default=str(RECIPE),
        metavar="YAML",
        help="our training config (default docs/examples/nuclei.yaml)",
    )
    parser.add_argument(
        "--override",
        default="{}",
        metavar="JSON",
        help="mrcnn Config values on top of the recipe, kept by auto_config "
        "(both engines follow them)",
    )
    parser.add_argument(
        "--peer",
        choices=("auto", "none"),
        default="auto",
        help="auto: also run torchvision when torch and torchvision are installed",
    )
    parser.add_argument(
        "--peer-backbone",
        choices=PEER_BACKBONES,
        default="resnet18",
        help="torchvision's backbone (resnet50: its default)",
    )
    parser.add_argument(
        "--peer-heads",
        choices=PEER_HEADS,
        default="default",
        help="torchvision's own head sizes (default) or ours' light ones",
    )
    parser.add_argument(
        "--train-images", type=int, metavar="N", help="keep the first N images of the train split"
    )
    parser.add_argument(
        "--val-images", type=int, metavar="N", help="keep the first N images of the val split"
    )
    parser.add_argument(
        "--min-score", type=float, default=0.05, help="lowest detection score kept for AP"
    )
    # Set by the parent for a child.
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    if not os.path.exists(args.dataset):
        parser.error(f"--dataset {args.dataset} does not exist")
    for name in ("train_images", "val_images"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    args.overrides = common.config_overrides(parser, args.override)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.engine:
        common.emit(run_job(args))
        return 0
    try:
        document = run_all(args, argv)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    common.emit(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
