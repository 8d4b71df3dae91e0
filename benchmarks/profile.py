"""Where a detect call or a training step of ours spends its time, op by op, against its FLOPs.

    python -m benchmarks.profile [--task detect|train] [--size 512] [--batch 1]
                                 [--precision fp32|bf16] [--steps 3] [--top 15] [--override JSON]

The model is the inference benchmark's (ResNet50-FPN, matterport's heads, 81 classes, random
weights, 100 detections per image; the training step: all layers, `TRAIN_BN`, 200 sampled
ROIs per image). After a warm-up call, `--steps` calls are traced with TensorFlow's profiler
and read with xprof's `framework_op_stats` (`pip install xprof`; in the `bench` extra).

Printed as JSON: seconds per call, self time per TensorFlow op type, and per part of the
network (backbone, FPN, RPN, box head, mask head, the rest: proposals, ROI Align, detection,
losses, optimizer) its time, its convolution and matmul FLOPs (counted from the layers'
kernels and output sizes; a training step counts 3× the forward FLOPs of its layers) and the
GFLOP/s that makes, beside the GFLOP/s of one large matmul on the same CPU and precision
(what the CPU can attain). Profiling adds some overhead per op.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import re
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

from benchmarks import common

PARTS = (
    ("backbone", re.compile(r"(conv1.*|bn_conv1|res\d.*|bn\d.*)$")),
    ("fpn", re.compile(r"fpn_.*")),
    ("rpn", re.compile(r"rpn_.*")),
    ("box_head", re.compile(r"mrcnn_(class|bbox).*")),
    ("mask_head", re.compile(r"mrcnn_mask.*")),
)


def part_of(layer_name: str) -> str:
    return next((part for part, pattern in PARTS if pattern.fullmatch(layer_name)), "rest")


def stride_of(layer_name: str) -> int:
    """Output stride of a backbone or FPN layer by matterport's names (res3… → 8, fpn_p4 → 16)."""
    if layer_name == "conv1" or layer_name == "bn_conv1":
        return 2
    digits = re.search(r"(\d)", layer_name)
    return 2 ** int(digits.group(1)) if digits else 1


def layer_flops(layer, config, size: int, batch: int, rois: dict[str, int]) -> float:
    """Forward multiply-add FLOPs of one call of a convolution or dense layer, else 0."""
    import keras

    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return 0.0
    weights = float(math.prod(kernel.shape))
    part = part_of(layer.name)
    if part in ("backbone", "fpn"):
        positions = batch * (size // stride_of(layer.name)) ** 2
    elif part == "rpn":
        positions = batch * sum((size // stride) ** 2 for stride in config.BACKBONE_STRIDES)
    else:
        instances = batch * rois.get(part, 0)
        if isinstance(layer, keras.layers.Dense) or tuple(layer.output.shape[1:3]) == (1, 1):
            positions = instances  # a dense layer, or a window-covering convolution
        else:
            height, width = layer.output.shape[1:3]
            strides = getattr(layer, "strides", (1, 1))
            positions = instances * height * width
            if isinstance(layer, keras.layers.Conv2DTranspose):
                positions //= (
                    strides[0] * strides[1]
                )  # the kernel is applied at every input position
    return 2.0 * weights * positions


def owning_layer(op_name: str, names: list[str]) -> str | None:
    """The longest layer name that is a path component of `op_name` (Keras may suffix `_1`)."""
    components = {re.sub(r"_\d+$", "", component) for component in op_name.split("/")} | set(
        op_name.split("/")
    )
    return next((name for name in names if name in components), None)


def op_rows(xspace_path: str) -> list[dict[str, Any]]:
    from xprof.convert import raw_to_tool_data

    data, _ = raw_to_tool_data.xspace_to_tool_data([xspace_path], "framework_op_stats", {})
    table = json.loads(data)[0]
    ids = [column["id"] for column in table["cols"]]
    rows = [dict(zip(ids, (cell["v"] for cell in row["c"]))) for row in table["rows"]]
    return [row for row in rows if row["type"] != "IDLE"]


def matmul_rate(precision: str, n: int = 2048, repeats: int = 8) -> float:
    """GFLOP/s of an n×n matmul in TensorFlow, best of `repeats`."""
    import tensorflow as tf

    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    a = tf.random.normal((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    multiply = tf.function(lambda x: tf.matmul(x, x))
    multiply(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        multiply(a).numpy()
        best = min(best, time.perf_counter() - started)
    return round(2.0 * n**3 / best / 1e9, 1)


def profile(
    task: str,
    size: int,
    batch: int,
    precision: str,
    steps: int,
    top: int,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    import tensorflow as tf

    from benchmarks.inference import ours_detect_call, ours_train_call
    from mrcnn.initialization import leaf_layers

    make = ours_detect_call if task == "detect" else ours_train_call
    call, model = make(size, batch, precision, **overrides)
    config = model.config
    call()  # tracing
    call()
    logdir = tempfile.mkdtemp(prefix="bench-profile-")
    tf.profiler.experimental.start(logdir)
    started = time.perf_counter()
    for _ in range(steps):
        call()
    seconds = (time.perf_counter() - started) / steps
    tf.profiler.experimental.stop()
    rows = op_rows(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0])

    layers = leaf_layers(model.keras_model)
    names = sorted((layer.name for layer in layers), key=len, reverse=True)
    training = task == "train"
    # Training: the mask head runs on at most the positive slots (fewer when a batch has fewer
    # positives), so its FLOPs are an upper bound there.
    rois = (
        {
            "box_head": config.TRAIN_ROIS_PER_IMAGE,
            "mask_head": int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO),
        }
        if training
        else {
            "box_head": config.POST_NMS_ROIS_INFERENCE,
            "mask_head": config.DETECTION_MAX_INSTANCES,
        }
    )
    flops: dict[str, float] = defaultdict(float)
    for layer in layers:
        flops[part_of(layer.name)] += layer_flops(layer, config, size, batch, rois) * (
            3 if training else 1
        )

    by_type: dict[str, float] = defaultdict(float)
    by_part: dict[str, float] = defaultdict(float)
    for row in rows:
        micros = row["total_self_time"] / steps
        by_type[row["type"]] += micros
        layer = owning_layer(row["operation"], names)
        by_part[part_of(layer) if layer else "rest"] += micros
    traced = sum(by_type.values())
    peak = matmul_rate(precision)
    parts = {}
    for part in [p for p, _ in PARTS] + ["rest"]:
        part_seconds = by_part[part] / 1e6
        rate = flops[part] / part_seconds / 1e9 if part_seconds and flops[part] else None
        parts[part] = {
            "seconds": round(part_seconds, 4),
            "share": round(by_part[part] / traced, 3) if traced else None,
            "gflops": round(flops[part] / 1e9, 2),
            "gflop_per_s": round(rate, 1) if rate else None,
            "of_matmul_rate": round(rate / peak, 2) if rate else None,
        }
    ranked = sorted(by_type.items(), key=lambda item: item[1], reverse=True)[:top]
    total_flops = sum(flops.values())
    return {
        "seconds_per_call": round(seconds, 4),
        "traced_op_seconds_per_call": round(traced / 1e6, 4),
        "gflops_per_call": round(total_flops / 1e9, 1),
        "gflop_per_s_whole_call": round(total_flops / seconds / 1e9, 1),
        "matmul_gflop_per_s": peak,
        "parts": parts,
        "op_types": [
            {"type": name, "seconds": round(micros / 1e6, 4), "share": round(micros / traced, 3)}
            for name, micros in ranked
        ],
        "threads": common.tf_threads(),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=("detect", "train"), default="detect")
    parser.add_argument(
        "--size", type=int, default=512, help="square image size (a multiple of 64)"
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="images per call (detect 1, train 2)"
    )
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--steps", type=int, default=3, help="traced calls after the warm-up")
    parser.add_argument("--top", type=int, default=15, help="op types listed")
    parser.add_argument(
        "--override",
        default="{}",
        metavar="JSON",
        help="Config values on top of the benchmark's, e.g. the learning recipe's "
        '\'{"NUM_CLASSES": 4, "TRAIN_ROIS_PER_IMAGE": 32}\'',
    )
    args = parser.parse_args(argv)
    args.overrides = common.config_overrides(parser, args.override)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    batch = args.batch or (1 if args.task == "detect" else 2)
    document = common.header("profile", argv)
    overrides = args.overrides
    document["settings"] = {
        "task": args.task,
        "size": args.size,
        "batch": batch,
        "precision": args.precision,
        "steps": args.steps,
        "overrides": overrides,
    }
    document["result"] = profile(
        args.task, args.size, batch, args.precision, args.steps, args.top, overrides
    )
    document["load_average_at_end"] = common.load_average()
    common.emit(document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
