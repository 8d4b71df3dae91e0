"""Training steps per minute on real images: our Mask R-CNN against torchvision's, in one run.

    python -m benchmarks.train_step --dataset DIR [--steps 20] [--warmup 3] [--rounds 1]
                                    [--peer-heads default|light] [--peer auto|none]
                                    [--override JSON]

`DIR` is a canonical dataset as `mrcnn-pipeline convert` writes it (`images/`,
`annotations/train.json`), e.g. the nuclei after
`mrcnn-pipeline convert --format mask-folders --input …/nuclei_dsb2018/stage1_train
--output DIR --class nucleus`. Both engines train from random weights on the same random
256² crops of its train split (`IMAGE_RESIZE_MODE="crop"`), batch 4, anchors 8–128 (ratios
0.5, 1, 2), 128 sampled ROIs per image, AdamW 1e-3 with a 50-step warmup, trainable batch
norm everywhere:

- ours: ResNet-18 FPN with the light heads (`TOP_DOWN_PYRAMID_SIZE` 128,
  `FPN_CLASSIF_FC_LAYERS_SIZE` 256, `MASK_POOL_SIZE` 7, `MASK_SHAPE` [14, 14]), up to 256
  instances per image, GT boxes among the proposals, `WEIGHT_INIT="torchvision"`;
  `MaskRCNN.train` reads batches through `DataGenerator` (loaded while the previous step runs);
- torchvision: ResNet-18 FPN; `--peer-heads default` keeps torchvision's heads (256-channel
  FPN, 1024-wide box head, 14×14 mask features → 28×28 masks), `light` sizes them as ours
  (128-channel FPN, 256-wide box head, 7×7 → 14×14, batch norm in the mask head); positive
  fraction 0.33 as ours. Its loop loads each batch before its step (our `load_image_gt`
  without mini-masks).

Each engine runs `--warmup` untimed steps then `--steps` timed ones in its own child process;
`--rounds N` alternates the children N times (ours, torchvision, ours, …) so load changes hit
both. Printed as JSON: the CPU (`mrcnn.hardware.detect().describe()`), load averages, per
engine and round the seconds per step (data loading included), steps per minute, the seconds
to the first step and the input pipeline's own seconds per batch; the ratio of steps per
minute ours / torchvision (≥ 1: ours steps faster). On a CPU without AVX-512, TensorFlow
runs Eigen's kernels instead of oneDNN's; `TF_ENABLE_ONEDNN_OPTS=0` in the environment
measures that case on any CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks import common
from mrcnn import hardware

ENGINES = ("ours", "torchvision")
BATCH = 4
CROP = 256
ANCHOR_SCALES = (8, 16, 32, 64, 128)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ROIS_PER_IMAGE = 128
POSITIVE_FRACTION = 0.33
MAX_INSTANCES = 256
LEARNING_RATE = 1e-3
WARMUP_STEPS = 50
WEIGHT_DECAY = 1e-4
# The nuclei's mean pixel, as matterport's nucleus sample sets it (ours subtracts it; torchvision
# normalizes with its own ImageNet statistics).
MEAN_PIXEL = (43.53, 39.56, 48.22)
PEER_HEADS = ("default", "light")
NOTES = [
    "seconds_per_step: wall-clock time between consecutive step ends after the warm-up steps, "
    "data loading included (ours: DataGenerator through Keras's fit, loaded while the previous "
    "step runs; torchvision: load_image_gt before each step, in its loop)",
    "data_seconds_per_batch: ours' input pipeline alone (DataGenerator[i]), before training, "
    "in the same child",
    "random weights, the same 256² crops for both engines (load_image_gt with the same seeds); "
    "the figures are timings only",
    "steps_per_minute_ratio: ours / torchvision; >= 1 means ours steps at least as fast",
    "cpu_seconds_per_step: CPU time of the engine's process per step (all threads, data loading "
    "included); cpu_seconds_ratio ours / torchvision <= 1 means ours needs no more CPU per step. "
    "Steadier than wall time on a shared machine, but spinning thread pools inflate it under "
    "contention (torch's OpenMP threads unless OMP_WAIT_POLICY=PASSIVE)",
]


def ours_config(overrides: dict[str, Any] | None = None):
    """The issue's setup: ResNet-18, light heads, 256² crops, batch 4, dense-image limits."""
    from mrcnn.config import Config

    recipe = dict(
        NAME="train_step",
        BACKBONE="resnet18",
        NUM_CLASSES=2,
        IMAGES_PER_GPU=BATCH,
        IMAGE_RESIZE_MODE="crop",
        IMAGE_MIN_DIM=CROP,
        IMAGE_MAX_DIM=CROP,
        RPN_ANCHOR_SCALES=ANCHOR_SCALES,
        RPN_ANCHOR_RATIOS=list(ANCHOR_RATIOS),
        TRAIN_ROIS_PER_IMAGE=ROIS_PER_IMAGE,
        ROI_POSITIVE_RATIO=POSITIVE_FRACTION,
        MAX_GT_INSTANCES=MAX_INSTANCES,
        ROI_INCLUDE_GT_BOXES=True,
        TOP_DOWN_PYRAMID_SIZE=128,
        FPN_CLASSIF_FC_LAYERS_SIZE=256,
        MASK_POOL_SIZE=7,
        MASK_SHAPE=[14, 14],
        WEIGHT_INIT="torchvision",
        TRAIN_BN=True,
        OPTIMIZER="adamw",
        LEARNING_RATE=LEARNING_RATE,
        WARMUP_STEPS=WARMUP_STEPS,
        WEIGHT_DECAY=WEIGHT_DECAY,
        MEAN_PIXEL=np.array(MEAN_PIXEL),
        VALIDATION_STEPS=0,
        SEED=0,
    )
    return Config(**{**recipe, **(overrides or {})})


def training_images(dataset_dir: str):
    """The converter's train split as a prepared `CocoDataset`."""
    from mrcnn.dataset import CocoDataset

    dataset = CocoDataset()
    dataset.load_coco(dataset_dir, "train")
    dataset.prepare()
    return dataset


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def step_figures(
    ends: list[tuple[float, float]], started: tuple[float, float], warmup: int
) -> dict[str, Any]:
    """Timed steps after `warmup` steps, from (wall, CPU) clock readings at each step's end.

    CPU seconds per step count this process's work, whatever else shares the CPU: on a loaded
    machine they move far less than wall-clock seconds (spinning thread pools inflate them).
    """
    walls, cpus = zip(started, *ends)
    intervals, cpu_intervals = np.diff(walls).tolist(), np.diff(cpus).tolist()
    timed, cpu_timed = intervals[warmup:], cpu_intervals[warmup:]
    median = statistics.median(timed) if timed else None
    return {
        "steps_timed": len(timed),
        "first_step_seconds": round(intervals[0], 2) if intervals else None,
        "seconds_per_step": common.summarize(timed) if timed else None,
        "cpu_seconds_per_step": common.summarize(cpu_timed) if cpu_timed else None,
        "steps_per_minute": round(60.0 / median, 3) if median else None,
    }


# ---------------------------------------------------------------------- ours
def data_seconds_per_batch(dataset, config, batches: int) -> float:
    """Mean seconds of `DataGenerator` for one batch, nothing else running in this process."""
    from mrcnn.data import DataGenerator

    generator = DataGenerator(dataset, config, shuffle=True, steps=batches, seed=1)
    started = time.perf_counter()
    for index in range(batches):
        generator[index]
    return (time.perf_counter() - started) / batches


def run_ours(
    dataset_dir: str, steps: int, warmup: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    import keras

    from mrcnn.model import MaskRCNN

    class StepClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started, self.ends = (time.perf_counter(), cpu_seconds()), []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append((time.perf_counter(), cpu_seconds()))

    config = ours_config({"STEPS_PER_EPOCH": warmup + steps, **overrides})
    dataset = training_images(dataset_dir)
    data_seconds = data_seconds_per_batch(dataset, config, max(2, min(steps, 8)))
    clock = StepClock()
    with tempfile.TemporaryDirectory() as model_dir:
        model = MaskRCNN("training", config, model_dir)
        history = model.train(
            dataset,
            None,
            config.LEARNING_RATE,
            epochs=1,
            layers="all",
            custom_callbacks=[clock],
            verbose=0,
        )
    return {
        **step_figures(clock.ends, clock.started, warmup),
        "data_seconds_per_batch": round(data_seconds, 4),
        "last_loss": round(float(history.history["loss"][-1]), 4),
        "threads": common.tf_threads(),
    }


# ---------------------------------------------------------------------- torchvision
PEER_BACKBONES = ("resnet18", "resnet50")


def torch_model(heads: str, config=None, backbone: str = "resnet18", score_threshold: float = 0.05):
    """torchvision's Mask R-CNN on a ResNet FPN from random weights, trainable batch norm
    everywhere, mirroring an mrcnn `config` (default `ours_config()`): its training crop (no
    rescaling of crops), anchors, sampled ROIs and their positive share, proposals and
    detections kept at inference. Everything else is torchvision's own."""
    import torch
    from torchvision.models import resnet18, resnet50
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    config = ours_config() if config is None else config
    light = heads == "light"
    channels = 128 if light else 256
    body = {"resnet18": resnet18, "resnet50": resnet50}[backbone](
        weights=None, norm_layer=torch.nn.BatchNorm2d
    )
    expansion = 4 if backbone == "resnet50" else 1  # bottleneck blocks widen their output 4×
    returned = {f"layer{i}": str(i - 1) for i in range(1, 5)}
    fpn = BackboneWithFPN(
        body,
        returned,
        [64 * expansion * 2**i for i in range(4)],
        channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=None,
    )
    scales = tuple(int(s) for s in config.RPN_ANCHOR_SCALES)
    anchors = AnchorGenerator(
        tuple((s,) for s in scales),
        (tuple(float(r) for r in config.RPN_ANCHOR_RATIOS),) * len(scales),
    )
    extra: dict[str, Any] = {}
    if light:
        levels = ["0", "1", "2", "3"]
        mask_head = MaskRCNNHeads(channels, [256] * 4, 1, norm_layer=torch.nn.BatchNorm2d)
        extra = dict(
            box_head=TwoMLPHead(channels * 7 * 7, 256),
            box_predictor=FastRCNNPredictor(256, config.NUM_CLASSES),
            mask_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
            mask_head=mask_head,
            mask_predictor=MaskRCNNPredictor(256, 256, config.NUM_CLASSES),
        )
    crop = int(config.IMAGE_MIN_DIM)
    return MaskRCNN(
        fpn,
        num_classes=None if light else config.NUM_CLASSES,
        min_size=crop,
        max_size=crop,
        rpn_anchor_generator=anchors,
        rpn_post_nms_top_n_train=int(config.POST_NMS_ROIS_TRAINING),
        rpn_post_nms_top_n_test=int(config.POST_NMS_ROIS_INFERENCE),
        box_batch_size_per_image=int(config.TRAIN_ROIS_PER_IMAGE),
        box_positive_fraction=float(config.ROI_POSITIVE_RATIO),
        box_detections_per_img=int(config.DETECTION_MAX_INSTANCES),
        box_score_thresh=score_threshold,
        **extra,
    )


def torch_optimizer(model, config=None):
    """AdamW as ours (`config`, default `ours_config()`): its rate and weight decay, none on
    biases and norm parameters (1-d tensors), linear warmup over WARMUP_STEPS."""
    import torch

    config = ours_config() if config is None else config
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": config.WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.LEARNING_RATE)
    warmup = max(int(config.WARMUP_STEPS), 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup)
    )
    return optimizer, schedule


def torch_batch(
    dataset, config, positions: range, seed: int = 0, augmentation=None
) -> tuple[list, list]:
    """The crops ours trains on at these sample positions (`config`'s size, `augmentation`
    first), as torchvision's inputs."""
    from mrcnn.data import DataGenerator, load_image_gt

    order = DataGenerator(dataset, config, shuffle=True, steps=1, seed=seed)
    images, targets = [], []
    for position in positions:
        rng = np.random.default_rng((order.seed, position, 1))
        image_id = order._image_id(position)
        image, _, class_ids, _, masks = load_image_gt(
            dataset, config, image_id, augmentation, rng, use_mini_mask=False
        )
        images.append(common.to_torch_image(image))
        targets.append(common.to_torch_target(masks, class_ids))
    return images, targets


def run_torchvision(dataset_dir: str, steps: int, warmup: int, heads: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(hardware.usable_cores())
    torch.manual_seed(0)
    config = ours_config()
    dataset = training_images(dataset_dir)
    model = torch_model(heads).train()
    optimizer, schedule = torch_optimizer(model)
    ends: list[tuple[float, float]] = []
    started = (time.perf_counter(), cpu_seconds())
    loss = float("nan")
    for step in range(warmup + steps):
        images, targets = torch_batch(dataset, config, range(step * BATCH, (step + 1) * BATCH))
        total = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        schedule.step()
        loss = float(total.detach())
        ends.append((time.perf_counter(), cpu_seconds()))
    return {
        **step_figures(ends, started, warmup),
        "last_loss": round(loss, 4),
        "heads": heads,
        "threads": {
            "intra_op": torch.get_num_threads(),
            "inter_op": torch.get_num_interop_threads(),
        },
    }


# ---------------------------------------------------------------------- parent and CLI
def run_job(args: argparse.Namespace) -> dict[str, Any]:
    if args.engine == "ours":
        result = run_ours(args.dataset, args.steps, args.warmup, args.overrides)
    else:
        result = run_torchvision(args.dataset, args.steps, args.warmup, args.peer_heads)
    return {"engine": args.engine, **result, "peak_rss_mib": common.peak_rss_mib()}


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    document = common.header("train_step", argv)
    document["hardware"] = hardware.detect(include_gpus=False).describe()
    peer = args.peer == "auto" and common.peer_available()
    document["settings"] = {
        "dataset": args.dataset,
        "crop": CROP,
        "batch": BATCH,
        "anchor_scales": ANCHOR_SCALES,
        "rois_per_image": ROIS_PER_IMAGE,
        "positive_fraction": POSITIVE_FRACTION,
        "max_instances_ours": MAX_INSTANCES,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "overrides_ours": args.overrides,
        "peer_heads": args.peer_heads,
        "peer": "torchvision"
        if peer
        else ("none (--peer none)" if args.peer == "none" else "none (not installed)"),
    }
    document["notes"] = NOTES
    shared = [
        "--dataset",
        args.dataset,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--override",
        args.override,
        "--peer-heads",
        args.peer_heads,
    ]
    engines = ["ours", *(["torchvision"] if peer else [])]
    results = []
    for round_index in range(args.rounds):
        for engine in engines:
            child = common.run_child("benchmarks.train_step", ["--engine", engine, *shared])
            results.append(
                {
                    "engine": engine,
                    "round": round_index,
                    **child,
                    "load_average_after": common.load_average(),
                }
            )
    document["results"] = results
    document["load_average_at_end"] = common.load_average()
    rates = {
        engine: median_over_rounds(results, engine, lambda r: r.get("steps_per_minute"))
        for engine in engines
    }
    cpus = {
        engine: median_over_rounds(
            results, engine, lambda r: (r.get("cpu_seconds_per_step") or {}).get("median")
        )
        for engine in engines
    }
    document["steps_per_minute"] = rates
    document["steps_per_minute_ratio"] = common.ratio(rates.get("ours"), rates.get("torchvision"))
    document["cpu_seconds_per_step"] = cpus
    document["cpu_seconds_ratio"] = common.ratio(cpus.get("ours"), cpus.get("torchvision"))
    return document


def median_over_rounds(results: list[dict[str, Any]], engine: str, figure) -> float | None:
    """The median of `figure(result)` over an engine's rounds that produced it."""
    values = [figure(r) for r in results if r["engine"] == engine and figure(r)]
    return statistics.median(values) if values else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="DIR",
        help="a canonical dataset folder (images/, annotations/train.json)",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per engine and round")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps first (tracing, caches)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="times each engine runs, alternating")
    parser.add_argument(
        "--peer",
        choices=("auto", "none"),
        default="auto",
        help="auto: also run torchvision when torch and torchvision are installed",
    )
    parser.add_argument(
        "--peer-heads",
        choices=PEER_HEADS,
        default="default",
        help="torchvision's own head sizes (default) or ours' light sizes (light)",
    )
    parser.add_argument(
        "--override",
        default="{}",
        metavar="JSON",
        help="mrcnn Config values for ours on top of the setup",
    )
    # Set by the parent for a child.
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.dataset, "annotations", "train.json")):
        parser.error(
            f"--dataset {args.dataset} has no annotations/train.json "
            "(convert the images with mrcnn-pipeline convert first)"
        )
    if args.steps < 1 or args.warmup < 1 or args.rounds < 1:
        parser.error("--steps, --warmup and --rounds must be >= 1")
    args.overrides = common.config_overrides(parser, args.override)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    common.emit(run_job(args) if args.engine else run_all(args, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
