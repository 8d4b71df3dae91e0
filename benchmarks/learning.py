"""Learning from scratch in a time budget: our Mask R-CNN against torchvision's, in one run.

    python -m benchmarks.learning [--minutes 15] [--peer auto|none] [--min-score 0.05]
        [--backbones resnet18 resnet50] [--override '{"ROI_INCLUDE_GT_BOXES": true}']
        [--epochs-per-call 2] [--curve] [--bf16]

Synthetic shapes at 128×128 (3 classes; 500 training images, seed 1; 50 held-out images,
seed 2), ResNet50-FPN from random weights, batch 8, AdamW lr 3e-4 with a 50-step linear
warmup, trainable batch norm, anchors (8, 16, 32, 64, 128), 32 sampled ROIs per image. Each
engine trains for `--minutes` of wall-clock time (its first, tracing step included), then
detects the held-out images: mask mAP@0.5 (matterport's metric) and COCO segm/bbox AP via
`mrcnn.evaluation.DetectionEvaluator`, plus steps done and seconds per step. Each engine runs
in its own child process; the JSON on stdout holds both. `--epochs-per-call N` trains ours as
matterport users' scripts do: `train()` called again every N epochs (cumulative `epochs`).
`--curve` also scores each engine's weights every epoch (`STEPS_PER_EPOCH` steps, ours from
its checkpoints, torchvision's from snapshots taken in memory), after the budget: how far one
run's final score moves from epoch to epoch. `--bf16` trains both in bfloat16 (ours under
Keras's "mixed_bfloat16" policy, torchvision under CPU autocast); both still detect in float32.

With `--dataset PATH` the benchmark learns a real dataset instead (a microscope folder
converted on the fly, `--format mask-folders`, or a canonical dataset), ours with the config
chosen from the data, beside Otsu's baselines: `benchmarks.learning_real`, whose options
`python -m benchmarks.learning --dataset PATH --help` lists.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

ENGINES = ("ours", "torchvision")
IMAGE_SIZE = 128
BATCH = 8
LEARNING_RATE = 3e-4
WARMUP_STEPS = 50
WEIGHT_DECAY = 1e-4
ANCHOR_SCALES = (8, 16, 32, 64, 128)
ROIS_PER_IMAGE = 32
STEPS_PER_EPOCH = 100
TRAIN_SEED, VAL_SEED = 1, 2
NOTES = [
    "minutes is the wall-clock training budget per engine, counted from the first step "
    "(tracing included); the step that crosses it is finished",
    "seconds_per_step: time between consecutive step ends (data loading included), "
    "first two steps left out",
    "both engines: AdamW (weight decay 1e-4, none on biases and norm parameters), global "
    "gradient-norm clip 5, trainable batch norm; torchvision also gets our anchors and 32 "
    "sampled ROIs per image",
    "evaluation keeps detections scoring at least min_score "
    "(DETECTION_MIN_CONFIDENCE / box_score_thresh)",
]


def shapes(count: int, seed: int):
    from mrcnn.shapes import ShapesDataset

    dataset = ShapesDataset()
    dataset.load_shapes(count, IMAGE_SIZE, IMAGE_SIZE, seed=seed)
    dataset.prepare()
    return dataset


def evaluate(val, results: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """mAP@0.5 (matterport) and COCO AP of `results`, one `detect()` dict per held-out image."""
    from mrcnn.evaluation import DetectionEvaluator

    evaluator = DetectionEvaluator(val.class_names)
    for image_id, result in zip(val.image_ids, results):
        gt_masks, gt_class_ids = val.load_mask(image_id)
        evaluator.process(int(image_id), gt_class_ids, gt_masks, result)
    metrics = evaluator.evaluate()
    return {
        "mask_mAP50": metrics["mAP50"],
        "mask_mAP50_95": metrics["mAP50_95"],
        "segm_AP": metrics["segm"]["AP"],
        "segm_AP50": metrics["segm"]["AP50"],
        "bbox_AP": metrics["bbox"]["AP"],
        "detections_per_image": round(float(np.mean([len(r["class_ids"]) for r in results])), 2),
    }


def curve_figures(val, scored: dict[int, list[dict[str, np.ndarray]]]) -> dict[str, Any]:
    """`curve`: mask mAP@0.5 of the weights after each number of steps, when any were scored."""
    if not scored:
        return {}
    return {
        "curve": [
            {"step": step, "mask_mAP50": round(evaluate(val, results)["mask_mAP50"], 4)}
            for step, results in sorted(scored.items())
        ]
    }


def step_figures(step_ends: list[float], started: float) -> dict[str, Any]:
    """Steps done and seconds per step from the wall-clock times at which steps ended."""
    intervals = np.diff([started, *step_ends]).tolist()
    steady = intervals[2:]  # the first steps trace graphs and warm caches
    return {
        "steps": len(step_ends),
        "first_step_seconds": round(intervals[0], 2) if intervals else None,
        "seconds_per_step": common.summarize(steady, with_runs=False) if steady else None,
    }


# ---------------------------------------------------------------------- ours
def run_ours(
    minutes: float,
    min_score: float,
    train_images: int,
    val_images: int,
    backbone: str = "resnet50",
    overrides: dict[str, Any] | None = None,
    epochs_per_call: int = 0,
    curve: bool = False,
    bf16: bool = False,
) -> dict[str, Any]:
    import keras

    from mrcnn.config import Config
    from mrcnn.model import CHECKPOINT_PATTERN, MaskRCNN

    class StepClock(keras.callbacks.Callback):
        """Records when each step ends; stops training once the budget is spent."""

        def __init__(self, seconds: float):
            super().__init__()
            self.seconds, self.ends = seconds, []

        def on_train_begin(self, logs=None):
            if not hasattr(self, "started"):  # the budget spans every train() call
                self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            if self.spent:
                self.model.stop_training = True

        @property
        def spent(self) -> bool:
            return bool(self.ends) and self.ends[-1] - self.started > self.seconds

    recipe = dict(
        NAME="shapes_bench",
        BACKBONE=backbone,
        NUM_CLASSES=4,
        IMAGES_PER_GPU=BATCH,
        IMAGE_MIN_DIM=IMAGE_SIZE,
        IMAGE_MAX_DIM=IMAGE_SIZE,
        RPN_ANCHOR_SCALES=ANCHOR_SCALES,
        TRAIN_ROIS_PER_IMAGE=ROIS_PER_IMAGE,
        STEPS_PER_EPOCH=STEPS_PER_EPOCH,
        VALIDATION_STEPS=0,
        OPTIMIZER="adamw",
        LEARNING_RATE=LEARNING_RATE,
        WARMUP_STEPS=WARMUP_STEPS,
        WEIGHT_DECAY=WEIGHT_DECAY,
        TRAIN_BN=True,
        DETECTION_MIN_CONFIDENCE=min_score,
        SEED=0,
    )
    config = Config(**{**recipe, **(overrides or {})})
    train, val = shapes(train_images, TRAIN_SEED), shapes(val_images, VAL_SEED)
    clock = StepClock(minutes * 60)
    with tempfile.TemporaryDirectory() as model_dir:
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
        model = MaskRCNN("training", config, model_dir)
        calls = 0
        while not clock.spent:
            calls += 1
            epochs = calls * epochs_per_call if epochs_per_call else 10**6
            model.train(
                train,
                None,
                config.LEARNING_RATE,
                epochs=epochs,
                layers="all",
                custom_callbacks=[clock],
                verbose=0,
            )
        train_seconds = time.perf_counter() - clock.started
        keras.mixed_precision.set_global_policy("float32")  # detection as in every other run
        detector = MaskRCNN("inference", config, model_dir)
        last = model.find_last()
        detector.load_weights(last)
        images = [val.load_image(i) for i in val.image_ids]
        started = time.perf_counter()
        results = detector.detect(images)
        eval_seconds = time.perf_counter() - started
        scored = {}
        if curve:
            scored[len(clock.ends)] = results  # the last checkpoint's, detected above
            for checkpoint in sorted(Path(last).parent.glob("mask_rcnn*.h5"))[:-1]:
                epoch = int(CHECKPOINT_PATTERN.match(str(checkpoint)).group(6))
                detector.load_weights(str(checkpoint))
                scored[epoch * config.STEPS_PER_EPOCH] = detector.detect(images)
    return {
        **step_figures(clock.ends, clock.started),
        "train_seconds": round(train_seconds, 1),
        "detect_seconds_per_image": round(eval_seconds / len(results), 4),
        **evaluate(val, results),
        **curve_figures(val, scored),
        "train_calls": calls,
        "threads": common.tf_threads(),
    }


# ---------------------------------------------------------------------- torchvision
def torch_model(min_score: float):
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    anchors = AnchorGenerator(
        tuple((s,) for s in ANCHOR_SCALES), ((0.5, 1.0, 2.0),) * len(ANCHOR_SCALES)
    )
    return maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=4,
        min_size=IMAGE_SIZE,
        max_size=IMAGE_SIZE,
        rpn_anchor_generator=anchors,
        box_batch_size_per_image=ROIS_PER_IMAGE,
        box_score_thresh=min_score,
    )


def torch_optimizer(model):
    """AdamW with our recipe: no decay on biases and norm parameters (1-d tensors), warmup."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS)
    )
    return optimizer, schedule


def torch_detect(model, val) -> list[dict[str, np.ndarray]]:
    import torch

    model.eval()
    results = []
    with torch.inference_mode():
        images = [common.to_torch_image(val.load_image(i)) for i in val.image_ids]
        for start in range(0, len(images), BATCH):
            results += [common.from_torch_output(o) for o in model(images[start : start + BATCH])]
    return results


def run_torchvision(
    minutes: float,
    min_score: float,
    train_images: int,
    val_images: int,
    curve_every: int = 0,
    bf16: bool = False,
) -> dict[str, Any]:
    """`curve_every` > 0: also score the weights every that many steps (snapshots in memory)."""
    import contextlib
    import os

    import torch

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    train, val = shapes(train_images, TRAIN_SEED), shapes(val_images, VAL_SEED)
    images = [common.to_torch_image(train.load_image(i)) for i in train.image_ids]
    targets = [common.to_torch_target(*train.load_mask(i)) for i in train.image_ids]
    model = torch_model(min_score).train()
    optimizer, schedule = torch_optimizer(model)
    rng = np.random.default_rng(0)
    order: list[int] = []
    ends: list[float] = []
    snapshots: dict[int, dict[str, Any]] = {}
    train_started = time.perf_counter()
    while not ends or ends[-1] - train_started <= minutes * 60:
        if len(order) < BATCH:
            order += rng.permutation(len(images)).tolist()
        batch, order = order[:BATCH], order[BATCH:]
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = sum(model([images[i] for i in batch], [targets[i] for i in batch]).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        ends.append(time.perf_counter())
        if curve_every and len(ends) % curve_every == 0:
            snapshots[len(ends)] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_seconds = time.perf_counter() - train_started
    started = time.perf_counter()
    results = torch_detect(model, val)
    eval_seconds = time.perf_counter() - started
    scored = {len(ends): results} if curve_every else {}
    for step, state in snapshots.items():
        model.load_state_dict(state)
        scored[step] = torch_detect(model, val)
    return {
        **step_figures(ends, train_started),
        "train_seconds": round(train_seconds, 1),
        "detect_seconds_per_image": round(eval_seconds / len(results), 4),
        **evaluate(val, results),
        **curve_figures(val, scored),
        "threads": {
            "intra_op": torch.get_num_threads(),
            "inter_op": torch.get_num_interop_threads(),
        },
    }


# ---------------------------------------------------------------------- parent and CLI
def run_job(args: argparse.Namespace) -> dict[str, Any]:
    if args.engine == "ours":
        result = run_ours(
            args.minutes,
            args.min_score,
            args.train_images,
            args.val_images,
            args.backbone,
            args.overrides,
            args.epochs_per_call,
            args.curve,
            args.bf16,
        )
    else:
        every = int(args.overrides.get("STEPS_PER_EPOCH", STEPS_PER_EPOCH)) if args.curve else 0
        result = run_torchvision(
            args.minutes, args.min_score, args.train_images, args.val_images, every, args.bf16
        )
    backbone = {"backbone": args.backbone} if args.engine == "ours" else {"backbone": "resnet50"}
    return {"engine": args.engine, **backbone, **result, "peak_rss_mib": common.peak_rss_mib()}


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    document = common.header("learning", argv)
    peer = args.peer == "auto" and common.peer_available()
    document["settings"] = {
        "minutes": args.minutes,
        "image_size": IMAGE_SIZE,
        "classes": 3,
        "train_images": args.train_images,
        "val_images": args.val_images,
        "backbones_ours": args.backbones,
        "batch": BATCH,
        "optimizer": "adamw",
        "learning_rate": LEARNING_RATE,
        "warmup_steps": WARMUP_STEPS,
        "anchor_scales": ANCHOR_SCALES,
        "rois_per_image": ROIS_PER_IMAGE,
        "min_score": args.min_score,
        "overrides_ours": args.overrides,
        "epochs_per_call_ours": args.epochs_per_call,
        "curve": args.curve,
        "training_precision": "bf16" if args.bf16 else "fp32",
        "peer": "torchvision"
        if peer
        else ("none (--peer none)" if args.peer == "none" else "none (not installed)"),
    }
    document["notes"] = NOTES
    shared = [
        "--minutes",
        str(args.minutes),
        "--min-score",
        str(args.min_score),
        "--train-images",
        str(args.train_images),
        "--val-images",
        str(args.val_images),
        "--override",
        args.override,
        "--epochs-per-call",
        str(args.epochs_per_call),
        *(["--curve"] if args.curve else []),
        *(["--bf16"] if args.bf16 else []),
    ]
    jobs = [("ours", ["--backbone", backbone]) for backbone in args.backbones]
    jobs += [("torchvision", [])] if peer else []
    results = [
        {
            "engine": engine,
            **common.run_child("benchmarks.learning", ["--engine", engine, *extra, *shared]),
        }
        for engine, extra in jobs
    ]
    document["results"] = results
    document["load_average_at_end"] = common.load_average()
    theirs = next((r for r in results if r["engine"] == "torchvision"), {})
    document["ratio_seconds_per_step_over_torchvision"] = {
        result.get("backbone", "?"): common.ratio(
            (result.get("seconds_per_step") or {}).get("median"),
            (theirs.get("seconds_per_step") or {}).get("median"),
        )
        for result in results
        if result["engine"] == "ours"
    }
    return document


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=15.0, help="training budget per engine (0.5: smoke run)"
    )
    parser.add_argument(
        "--peer",
        choices=("auto", "none"),
        default="auto",
        help="auto: also run torchvision when torch and torchvision are installed",
    )
    parser.add_argument(
        "--min-score", type=float, default=0.05, help="lowest detection score kept for evaluation"
    )
    parser.add_argument("--train-images", type=int, default=500)
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=["resnet50"],
        help="our backbones, each trained in turn (resnet18, resnet34, resnet50); "
        "torchvision keeps ResNet-50",
    )
    parser.add_argument("--backbone", default="resnet50", help=argparse.SUPPRESS)  # one child's
    parser.add_argument(
        "--override",
        default="{}",
        metavar="JSON",
        help="mrcnn Config values for ours on top of the recipe, e.g. "
        "'{\"ROI_INCLUDE_GT_BOXES\": true}'",
    )
    parser.add_argument(
        "--epochs-per-call",
        type=int,
        default=0,
        metavar="N",
        help="ours: call train() again every N epochs, as matterport scripts do "
        "(default 0: one call)",
    )
    parser.add_argument(
        "--curve",
        action="store_true",
        help="also score both engines' weights after every epoch (STEPS_PER_EPOCH steps)",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="train both engines in bfloat16 (detection stays float32)",
    )
    parser.add_argument(
        "--engine", choices=ENGINES, help=argparse.SUPPRESS
    )  # set by the parent for a child
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    args.overrides = common.config_overrides(parser, args.override)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(arg == "--dataset" or arg.startswith("--dataset=") for arg in argv):
        from benchmarks import learning_real  # it imports this module: not at the top

        return learning_real.main(argv)
    args = parse_args(argv)
    common.emit(run_job(args) if args.engine else run_all(args, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
