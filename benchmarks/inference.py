"""Inference and training-step speed: our Mask R-CNN against torchvision's, in one run.

    python -m benchmarks.inference [--sizes 512 1024] [--batches 1 4] [--runs 8] [--warmup 2]
                                   [--runtimes tensorflow openvino onnxruntime] [--peer auto|none]
                                   [--train-step] [--bf16] [--quick]

Ours is ResNet50-FPN with matterport's defaults, NUM_CLASSES 81 and
DETECTION_MIN_CONFIDENCE 0 (so the mask head runs on all 100 detections); the peer is
`torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, num_classes=81,
box_score_thresh=0, box_detections_per_img=100)`. Both have random weights: the figures are
timings only. Seconds per image cover the whole call on uint8 images, pre-processing and
full-size bool masks included, for both engines. `--runtimes openvino onnxruntime` also run
our model exported (`MaskRCNN.export(format=...)`, one conversion per size, its seconds
recorded) in OpenVINO (fp32, and bf16 with `--bf16`) and in ONNX Runtime (fp32 only);
`--runtimes openvino-int8` runs the OpenVINO export quantized to INT8 by `mrcnn.quantize`
(calibrated on `INT8_CALIBRATION_IMAGES` random images: with random weights only its speed
means something; its float parts in float32);
`--backbones resnet18 resnet50` measures ours with each backbone. Each engine runs in its own
child process (own peak RSS); the JSON on stdout holds every figure and the ratios over
torchvision.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
from typing import Any

import numpy as np

from benchmarks import common

ENGINES = ("ours", "ours-openvino", "ours-openvino-int8", "ours-onnxruntime", "torchvision")
RUNTIME_ENGINES = {
    "tensorflow": "ours",
    "openvino": "ours-openvino",
    "openvino-int8": "ours-openvino-int8",
    "onnxruntime": "ours-onnxruntime",
}
# engine -> export format
EXPORT_FORMATS = {
    "ours-openvino": "openvino",
    "ours-openvino-int8": "openvino-int8",
    "ours-onnxruntime": "onnx",
}
FP32_ONLY = ("ours-onnxruntime", "ours-openvino-int8")  # INT8 runs its float parts in fp32
INT8_CALIBRATION_IMAGES = 4
TASKS = ("inference", "train")
PRECISIONS = ("fp32", "bf16")
NUM_CLASSES = 81
TRAIN_LEARNING_RATE = 1e-3  # matterport's SGD recipe, used for both engines
NOTES = [
    "random weights: timings only, detections are meaningless",
    "seconds_per_image: median/min/max over timed runs after warm-up; each run is one call on a "
    "batch of random uint8 images, divided by the batch size; pre-processing and pasting "
    "full-size bool masks are included",
    "train step: one fixed batch of ShapesDataset images, all layers trainable, batch norm "
    "trainable in both engines, SGD lr 1e-3 momentum 0.9 weight decay 1e-4, gradient clip 5; "
    "data loading not timed",
    "bf16 (--bf16): ours via Config.INFERENCE_PRECISION='bfloat16' for inference "
    "(mixed_bfloat16 layers, float32 boxes/NMS/ROI Align) and the global Keras "
    "'mixed_bfloat16' policy for the training step (NHWC is TensorFlow's layout already); "
    "torchvision via torch.autocast('cpu', bfloat16) and channels-last",
    "each engine runs in its own child process; peak_rss_mib is that process's peak",
]


# ---------------------------------------------------------------------- ours
_backbone = "resnet50"  # ours' backbone in this child (--backbone)


def _ours_config(size: int, batch: int, **overrides: Any):
    from mrcnn.config import Config

    recipe = dict(
        NAME="bench",
        BACKBONE=_backbone,
        NUM_CLASSES=NUM_CLASSES,
        IMAGE_MIN_DIM=size,
        IMAGE_MAX_DIM=size,
        IMAGES_PER_GPU=batch,
        SEED=0,
    )
    return Config(**{**recipe, **overrides})


def _ours_policy(precision: str) -> str:
    """Set Keras's dtype policy (again: `clear_session` resets it) and return its name."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    return keras.mixed_precision.global_policy().name


def _ours_setup(precision: str) -> dict[str, Any]:
    return {"threads": common.tf_threads(), "dtype_policy": _ours_policy(precision)}


def ours_inference(size: int, batch: int, runs: int, warmup: int, precision: str) -> dict[str, Any]:
    """Time `MaskRCNN.detect` on `batch` random images of `size`²."""
    detect, model = ours_detect_call(size, batch, precision)
    seconds, results = common.time_runs(detect, warmup, runs)
    return {
        "seconds_per_image": common.summarize(seconds, scale=batch),
        "dtype_policy": f"INFERENCE_PRECISION={model.config.INFERENCE_PRECISION}",
        "detections_per_image": float(np.mean([len(r["class_ids"]) for r in results])),
    }


def ours_detect_call(size: int, batch: int, precision: str, **overrides: Any):
    """`detect` on `batch` random images of `size`², as a call without arguments, and its model."""
    from mrcnn.model import MaskRCNN

    _ours_policy("fp32")  # the model's own INFERENCE_PRECISION setting picks bfloat16
    inference_precision = "bfloat16" if precision == "bf16" else "float32"
    config = _ours_config(
        size,
        batch,
        **{
            "DETECTION_MIN_CONFIDENCE": 0.0,
            "INFERENCE_PRECISION": inference_precision,
            **overrides,
        },
    )
    with tempfile.TemporaryDirectory() as model_dir:
        model = MaskRCNN("inference", config, model_dir)
    images = common.random_images(batch, size)
    return (lambda: model.detect(images)), model


_exports: dict[
    tuple[str, int], tuple[str, float]
] = {}  # (format, size) -> (folder, conversion seconds)


def ours_export_inference(
    format: str, size: int, batch: int, runs: int, warmup: int, precision: str
) -> dict[str, Any]:
    """Time our model exported as `format`, run by that format's runtime, on the `detect` API."""
    import time

    from mrcnn.export import load_predict
    from mrcnn.model import MaskRCNN, detect_with

    _ours_policy("fp32")
    config = _ours_config(size, batch, DETECTION_MIN_CONFIDENCE=0.0)
    if (format, size) not in _exports:
        folder = tempfile.mkdtemp(prefix=f"bench-{format}-{size}-")
        started = time.perf_counter()
        MaskRCNN("inference", config, folder).export(folder, format=format.removesuffix("-int8"))
        if format.endswith("-int8"):
            from mrcnn.quantize import QuantizationSettings, quantize_openvino

            quantized = os.path.join(folder, "int8")
            quantize_openvino(
                folder,
                quantized,
                common.random_images(INT8_CALIBRATION_IMAGES, size, seed=1),
                QuantizationSettings(calibration_images=INT8_CALIBRATION_IMAGES),
            )
            folder = quantized
        _exports[format, size] = (folder, round(time.perf_counter() - started, 1))
    folder, conversion = _exports[format, size]
    threads = common.tf_threads().get("intra_op") or None
    predict = load_predict(
        folder, threads=threads, precision="bfloat16" if precision == "bf16" else "float32"
    )
    images = common.random_images(batch, size)
    seconds, results = common.time_runs(lambda: detect_with(predict, config, images), warmup, runs)
    return {
        "seconds_per_image": common.summarize(seconds, scale=batch),
        "dtype_policy": f"{format} {precision}",
        "conversion_seconds": conversion,
        "detections_per_image": float(np.mean([len(r["class_ids"]) for r in results])),
    }


def ours_train_step(
    size: int, batch: int, runs: int, warmup: int, precision: str
) -> dict[str, Any]:
    """Time `train_on_batch` of the training model (all layers) on one fixed shapes batch."""
    import keras

    step, _ = ours_train_call(size, batch, precision)
    seconds, logs = common.time_runs(step, warmup, runs)
    return {
        "seconds_per_step": common.summarize(seconds),
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "last_loss": round(float(logs["loss"]), 4),
    }


def ours_train_call(size: int, batch: int, precision: str, **overrides: Any):
    """One `train_on_batch` (all layers) on a fixed shapes batch, as a call without arguments.

    Returns the call and its model.
    """
    from mrcnn.data import DataGenerator
    from mrcnn.model import MaskRCNN
    from mrcnn.shapes import ShapesDataset
    from mrcnn.training import layers_regex, make_optimizer, set_trainable

    _ours_policy(precision)
    config = _ours_config(
        size, batch, **{"TRAIN_BN": True, "LEARNING_RATE": TRAIN_LEARNING_RATE, **overrides}
    )
    dataset = ShapesDataset()
    dataset.load_shapes(batch, size, size, seed=0)
    dataset.prepare()
    with tempfile.TemporaryDirectory() as model_dir:
        model = MaskRCNN("training", config, model_dir)
    set_trainable(model.keras_model, layers_regex("all"))
    model.keras_model.compile(optimizer=make_optimizer(config, config.LEARNING_RATE))
    inputs = DataGenerator(dataset, config, shuffle=False, steps=1, seed=0)[0]
    return (lambda: model.keras_model.train_on_batch(inputs, return_dict=True)), model


# ---------------------------------------------------------------------- torchvision
def _torch_setup(precision: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    return {
        "threads": {
            "intra_op": torch.get_num_threads(),
            "inter_op": torch.get_num_interop_threads(),
        },
        "dtype_policy": "autocast bfloat16, channels_last" if precision == "bf16" else "float32",
    }


def _torch_model(size: int, precision: str, **kwargs: Any):
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=NUM_CLASSES,
        min_size=size,
        max_size=size,
        **kwargs,
    )
    if precision == "bf16":
        model = model.to(memory_format=torch.channels_last)
    return model


def _autocast(precision: str):
    import torch

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torch_inference(
    size: int, batch: int, runs: int, warmup: int, precision: str
) -> dict[str, Any]:
    """Time torchvision's eval-mode forward on `batch` random images of `size`²."""
    import torch

    model = _torch_model(size, precision, box_score_thresh=0.0, box_detections_per_img=100).eval()
    images = common.random_images(batch, size)

    def detect() -> list[dict[str, np.ndarray]]:
        with torch.inference_mode(), _autocast(precision):
            outputs = model([common.to_torch_image(image) for image in images])
        return [common.from_torch_output(output) for output in outputs]

    seconds, results = common.time_runs(detect, warmup, runs)
    return {
        "seconds_per_image": common.summarize(seconds, scale=batch),
        "detections_per_image": float(np.mean([len(r["class_ids"]) for r in results])),
    }


def torch_train_step(
    size: int, batch: int, runs: int, warmup: int, precision: str
) -> dict[str, Any]:
    """Time one SGD step of torchvision's training-mode model on the same shapes batch as ours."""
    import torch

    from mrcnn.shapes import ShapesDataset

    dataset = ShapesDataset()
    dataset.load_shapes(batch, size, size, seed=0)
    dataset.prepare()
    images = [common.to_torch_image(dataset.load_image(i)) for i in dataset.image_ids]
    targets = [common.to_torch_target(*dataset.load_mask(i)) for i in dataset.image_ids]
    model = _torch_model(size, precision).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=TRAIN_LEARNING_RATE, momentum=0.9, weight_decay=1e-4
    )

    def step() -> float:
        with _autocast(precision):
            loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return float(loss)

    seconds, loss = common.time_runs(step, warmup, runs)
    return {"seconds_per_step": common.summarize(seconds), "last_loss": round(loss, 4)}


# ------------------------------------------------------ one child = one engine, task, precision
def run_job(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every setting of one (engine, task, precision) and report it with peak RSS."""
    global _backbone
    engine, task, precision, _backbone = args.engine, args.task, args.precision, args.backbone
    job: dict[str, Any] = {"engine": engine, "task": task, "precision": precision, "records": []}
    job.update(_torch_setup(precision) if engine == "torchvision" else _ours_setup(precision))
    if task == "inference":
        settings = [(size, batch) for size in args.sizes for batch in args.batches]
    else:
        settings = [(args.train_size, args.train_batch)]
    for size, batch in settings:
        record: dict[str, Any] = {"size": size, "batch": batch}
        try:
            record.update(_measure(engine, task, precision, size, batch, args))
        except Exception as error:  # a failing setting is a result (e.g. bf16 not supported)
            record["error"] = (
                f"not supported: {type(error).__name__}: {common.plain(str(error), 600)}"
            )
        print(
            f"[bench] {engine} {task} {precision} {size}x{size} batch {batch}: {record}",
            file=sys.stderr,
            flush=True,
        )
        job["records"].append(record)
        _release(engine)
    job["peak_rss_mib"] = common.peak_rss_mib()
    return job


def _measure(
    engine: str, task: str, precision: str, size: int, batch: int, args: argparse.Namespace
) -> dict:
    if engine in EXPORT_FORMATS:
        return ours_export_inference(
            EXPORT_FORMATS[engine], size, batch, args.runs, args.warmup, precision
        )
    if engine == "ours":
        measure = ours_inference if task == "inference" else ours_train_step
    else:
        measure = torch_inference if task == "inference" else torch_train_step
    return measure(size, batch, args.runs, args.warmup, precision)


def _release(engine: str) -> None:
    """Free the previous setting's model before building the next one."""
    if engine != "torchvision":
        import keras

        keras.backend.clear_session()
    gc.collect()


# ---------------------------------------------------------------------- parent: all jobs, merged
def jobs(args: argparse.Namespace, peer: bool) -> list[tuple[str, str, str, str]]:
    """(engine, backbone, task, precision) in run order; engines alternate, so drift hits all."""
    engines = [
        (RUNTIME_ENGINES[runtime], backbone)
        for backbone in args.backbones
        for runtime in args.runtimes
    ]
    engines += [("torchvision", "resnet50")] if peer else []
    tasks = TASKS if args.train_step else TASKS[:1]
    precisions = PRECISIONS if args.bf16 else PRECISIONS[:1]
    return [
        (e, b, t, p)
        for p in precisions
        for t in tasks
        for e, b in engines
        if (e not in EXPORT_FORMATS or t == "inference") and (e not in FP32_ONLY or p == "fp32")
    ]


def label(job: dict[str, Any]) -> str:
    """An engine's name in the ratios: ``ours``, ``ours-openvino``, ``ours[resnet18]`` ..."""
    backbone = job.get("backbone", "resnet50")
    return job["engine"] if backbone == "resnet50" else f"{job['engine']}[{backbone}]"


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each engine's median over torchvision's per matching (task, precision, size, batch)."""
    table: dict[tuple, dict[str, float]] = {}
    for job in results:
        for record in job.get("records", []):
            figure = record.get("seconds_per_image") or record.get("seconds_per_step")
            if figure:
                key = (job["task"], job["precision"], record["size"], record["batch"])
                table.setdefault(key, {})[label(job)] = figure["median"]
    return [
        {
            "task": task,
            "precision": precision,
            "size": size,
            "batch": batch,
            **{f"{engine}_median": median for engine, median in medians.items()},
            **{
                f"ratio_{engine}_over_torchvision": common.ratio(median, medians.get("torchvision"))
                for engine, median in medians.items()
                if engine != "torchvision"
            },
            **{
                f"ratio_{engine}_over_ours": common.ratio(median, medians.get("ours"))
                for engine, median in medians.items()
                if engine.startswith("ours") and engine != "ours"
            },
        }
        for (task, precision, size, batch), medians in table.items()
    ]


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    document = common.header("inference", argv)
    peer = args.peer == "auto" and common.peer_available()
    document["settings"] = {
        "sizes": args.sizes,
        "batches": args.batches,
        "runs": args.runs,
        "warmup": args.warmup,
        "train_step": {"size": args.train_size, "batch": args.train_batch}
        if args.train_step
        else None,
        "bf16": args.bf16,
        "runtimes": args.runtimes,
        "backbones": args.backbones,
        "peer": "torchvision" if peer else f"none ({_why_no_peer(args)})",
    }
    document["notes"] = NOTES
    shared = [
        "--sizes",
        *map(str, args.sizes),
        "--batches",
        *map(str, args.batches),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
        "--train-size",
        str(args.train_size),
        "--train-batch",
        str(args.train_batch),
    ]
    results = []
    for engine, backbone, task, precision in jobs(args, peer):
        child = common.run_child(
            "benchmarks.inference",
            [
                "--engine",
                engine,
                "--backbone",
                backbone,
                "--task",
                task,
                "--precision",
                precision,
                *shared,
            ],
        )
        results.append(
            {"engine": engine, "backbone": backbone, "task": task, "precision": precision, **child}
        )
    document["results"] = results
    document["load_average_at_end"] = common.load_average()
    document["ratios"] = ratios(results)
    return document


def _why_no_peer(args: argparse.Namespace) -> str:
    return "--peer none" if args.peer == "none" else "torch/torchvision not installed"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[512, 1024],
        help="square image sizes (multiples of 64)",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="images per call")
    parser.add_argument("--runs", type=int, default=8, help="timed runs per setting")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed runs first (tracing, caches)"
    )
    parser.add_argument(
        "--runtimes",
        nargs="+",
        choices=tuple(RUNTIME_ENGINES),
        default=["tensorflow"],
        help="runtimes of ours: tensorflow (the Keras model), openvino (its OpenVINO IR export), "
        "openvino-int8 (that export quantized to INT8), onnxruntime (its ONNX export)",
    )
    parser.add_argument(
        "--peer",
        choices=("auto", "none"),
        default="auto",
        help="auto: also run torchvision when torch and torchvision are installed",
    )
    parser.add_argument("--train-step", action="store_true", help="also time a training step")
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument(
        "--bf16", action="store_true", help="also measure bf16 (autocast / mixed_bfloat16)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            "smoke run: size 256 (train step too), batches 1 2, 2 runs, 1 warm-up; overrides those"
        ),
    )
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=["resnet50"],
        help="ours' backbones, each measured (resnet18, resnet34, resnet50, resnet101); "
        "torchvision keeps ResNet-50",
    )
    parser.add_argument("--backbone", default="resnet50", help=argparse.SUPPRESS)  # one child's
    parser.add_argument(
        "--engine", choices=ENGINES, help=argparse.SUPPRESS
    )  # set by the parent for a child
    parser.add_argument("--task", choices=TASKS, default="inference", help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.runs, args.warmup, args.train_size = [256], [1, 2], 2, 1, 256
    bad = [s for s in [*args.sizes, args.train_size] if s % 64]
    if bad:
        parser.error(f"sizes must be multiples of 64 (the backbone downsamples 6 times), got {bad}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    common.emit(run_job(args) if args.engine else run_all(args, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
