"""INT8: accuracy against float32 per choice of float parts, speed beside the peer, the flow.

    python -m benchmarks.int8 --parts accuracy --model REF [--registry URI] --dataset URI
                              [--variants NAME ...] [--calibration-images 100] [--check-images 68]
    python -m benchmarks.int8 --parts speed [--sizes 512 1024] [--batches 1 4] [--runs 3]
                              [--warmup 1] [--peer auto|none]
    python -m benchmarks.int8 --parts pipeline [--model REF --registry URI] [--images 200]
    python -m benchmarks.int8 --quick          # smoke run of all three on tiny settings

- `accuracy` (needs a trained model and its canonical dataset): the model's OpenVINO export
  is quantized once per variant (`VARIANTS`: which `mrcnn.quantize.FLOAT_PARTS` stay in
  float32, NNCF's preset, the calibration size), calibrated on the dataset's train split, and
  checked on its val split against the ground truth (`mrcnn.int8_check`, tolerances wide
  open: the figures are measured, not judged); the float32 and INT8 detect times of the check
  are in each record.
- `speed`: `benchmarks.inference` children, one engine each, random weights (timings only):
  ours in TensorFlow, ours in OpenVINO fp32 and INT8, torchvision fp32; and in bf16 (ours in
  TensorFlow and OpenVINO, torchvision with autocast and channels-last) only where the CPU
  computes bf16 natively (`mrcnn.hardware`).
- `pipeline`: the `batch-inference` flow over the same `--images` JPEGs of
  `benchmarks.pipeline` (shapes, 640x480) with the float32 OpenVINO export and with the INT8
  export (`mrcnn-pipeline export-model --precision int8`'s code, calibrated on other images of
  the same kind); images per second of each, and their area ratios compared per image and
  class. Without `--model` the model is `benchmarks.pipeline.SMALL_MODEL` with random weights
  (timings only; its area ratios say nothing about accuracy).

One JSON document on stdout, with the CPU, its flags and the load, as the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common

PARTS = ("accuracy", "speed", "pipeline")
# name -> (float parts, NNCF preset, fast bias correction); measured in this order.
VARIANTS = {
    "nncf-default": ((), "performance", True),
    "box-arithmetic": (("box_arithmetic",), "performance", True),
    "box-arithmetic-mixed": (("box_arithmetic",), "mixed", True),
    "plus-softmax": (("box_arithmetic", "softmax"), "performance", True),
    "plus-box-deltas": (("box_arithmetic", "box_deltas"), "performance", True),
    "plus-mask-sigmoid": (("box_arithmetic", "mask_sigmoid"), "performance", True),
    "plus-roi-align": (("box_arithmetic", "roi_align"), "performance", True),
    "all-candidates": (
        ("box_arithmetic", "softmax", "box_deltas", "mask_sigmoid", "roi_align"),
        "performance",
        True,
    ),
    "box-arithmetic-deltas": (("box_arithmetic", "box_deltas"), "performance", True),
    "plus-classifier": (("box_arithmetic", "box_deltas", "classifier"), "performance", True),
    "exact-bias-correction": (("box_arithmetic", "box_deltas"), "performance", False),
}
BF16_REFERENCE = "bf16-reference"  # no quantization: OpenVINO bf16 under the same check
PIPELINE_CALIBRATION_SEED = 7  # calibration images differ from the measured ones
RUN_DATE = "2026-01-01"


# ---------------------------------------------------------------------- accuracy (one child)
def accuracy(job: dict[str, Any]) -> dict[str, Any]:
    """Quantize the model once per variant and check each against float32 on the val split."""
    from mrcnn.export import load_exported
    from mrcnn.int8_check import Tolerances, check_int8
    from mrcnn.quantize import QuantizationSettings, quantize_openvino
    from tasks.models import resolve
    from tasks.models.int8 import Int8Request, check_images, image_sets
    from tasks.models.runtimes import keras_model, model_config

    artifact = resolve(job["model"], job["registry"])
    config = model_config(artifact, IMAGES_PER_GPU=1, GPU_COUNT=1)
    wide_open = Tolerances(area_difference_pp=100.0, ap50_drop=1.0, matched_share=0.0)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as work:
        calibration, held_out = image_sets(
            Int8Request(job["dataset"]), artifact.class_names, config, work
        )
        float_folder = Path(work, "float32")
        keras_model(artifact, config).export(float_folder, format="openvino")
        float32 = load_exported(float_folder, precision="float32")
        for name in job["variants"]:
            if name == BF16_REFERENCE:
                records.append(_bf16_reference(float_folder, float32, held_out, job, artifact))
                continue
            parts, preset, fast_bias = VARIANTS[name]
            for count in job["calibration_images"]:
                settings = QuantizationSettings(count, parts, preset, fast_bias)
                started = time.perf_counter()
                quantized = quantize_openvino(
                    float_folder, Path(work, f"{name}-{count}"), calibration.images(count), settings
                )
                seconds = time.perf_counter() - started
                report = check_int8(
                    float32,
                    load_exported(quantized.folder, precision="float32"),
                    check_images(held_out, job["check_images"]),
                    artifact.class_names,
                    wide_open,
                )
                record = {
                    "variant": name,
                    **settings.to_dict(),
                    "quantize_seconds": round(seconds, 1),
                    "quantizers": quantized.quantizers,
                    **_rounded(report.to_dict()),
                }
                print(f"[bench] {name} {count}: {report.summary()}", file=sys.stderr, flush=True)
                records.append(record)
    return {
        "model": artifact.describe(),
        "calibration": calibration.description,
        "held_out": held_out.description,
        "records": records,
        "peak_rss_mib": common.peak_rss_mib(),
    }


def _bf16_reference(
    float_folder: Path, float32: Any, held_out: Any, job: dict[str, Any], artifact: Any
) -> dict[str, Any]:
    """The same check of OpenVINO bf16 against float32: how much a model moves when its
    arithmetic changes without quantization (only where the CPU computes bf16 natively)."""
    from mrcnn.export import load_exported
    from mrcnn.hardware import detect
    from mrcnn.int8_check import Tolerances, check_int8
    from tasks.models.int8 import check_images

    if not detect(include_gpus=False).native_bf16:
        return {"variant": BF16_REFERENCE, "skipped": "no native bf16 on this CPU"}
    report = check_int8(
        float32,
        load_exported(float_folder, precision="bfloat16"),
        check_images(held_out, job["check_images"]),
        artifact.class_names,
        Tolerances(area_difference_pp=100.0, ap50_drop=1.0, matched_share=0.0),
    )
    print(f"[bench] {BF16_REFERENCE}: {report.summary()}", file=sys.stderr, flush=True)
    return {"variant": BF16_REFERENCE, **_rounded(report.to_dict())}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items() if key != "tolerances"}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


# ---------------------------------------------------------------------- speed (parent)
def speed_jobs(native_bf16: bool, peer: bool) -> list[tuple[str, str]]:
    """(engine, precision) of `benchmarks.inference` children; bf16 only where native."""
    fp32 = ["ours", "ours-openvino", "ours-openvino-int8"] + (["torchvision"] if peer else [])
    bf16 = ["ours", "ours-openvino"] + (["torchvision"] if peer else [])
    return [(engine, "fp32") for engine in fp32] + (
        [(engine, "bf16") for engine in bf16] if native_bf16 else []
    )


def speed(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.inference import ratios
    from mrcnn.hardware import detect

    hardware = detect(include_gpus=False)
    peer = args.peer == "auto" and common.peer_available()
    shared = [
        "--sizes",
        *map(str, args.sizes),
        "--batches",
        *map(str, args.batches),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
    ]
    results = []
    for engine, precision in speed_jobs(hardware.native_bf16, peer):
        child = common.run_child(
            "benchmarks.inference",
            ["--engine", engine, "--task", "inference", "--precision", precision, *shared],
        )
        results.append(
            {
                "engine": engine,
                "backbone": "resnet50",
                "task": "inference",
                "precision": precision,
                **child,
            }
        )
    return {
        "settings": {
            "sizes": args.sizes,
            "batches": args.batches,
            "runs": args.runs,
            "warmup": args.warmup,
            "bf16": hardware.native_bf16,
            "peer": "torchvision" if peer else "none",
        },
        "results": results,
        "ratios": ratios(results),
    }


# ---------------------------------------------------------------------- pipeline (children)
def pipeline_exports(job: dict[str, Any]) -> dict[str, Any]:
    """Child: the model's float32 OpenVINO export and its INT8 export (with its check)."""
    from mrcnn.int8_check import Tolerances
    from tasks.models import resolve
    from tasks.models.exports import export_artifact
    from tasks.models.int8 import Int8Request, export_int8

    if job.get("model"):
        artifact = resolve(job["model"], job["registry"])
    else:
        from benchmarks.pipeline import save_model

        save_model(job["work"])
        artifact = resolve(
            weights=os.path.join(job["work"], "model.weights.h5"),
            config=os.path.join(job["work"], "config.json"),
        )
    float_uri = export_artifact(artifact, "openvino", os.path.join(job["work"], "float32"))
    request = Int8Request(
        job["calibration"],
        calibration_images=job["calibration_images"],
        check=job["check"],
        check_images=job["check_images"],
        tolerances=Tolerances(area_difference_pp=100.0, ap50_drop=1.0, matched_share=0.0),
    )
    started = time.perf_counter()
    exported = export_int8(artifact, request, os.path.join(job["work"], "int8"))
    return {
        "float32": float_uri,
        "int8": exported.uri,
        "export_int8_seconds": round(time.perf_counter() - started, 1),
        "check": _rounded(exported.report["check"]),
    }


def pipeline_flow(job: dict[str, Any]) -> dict[str, Any]:
    """Child: the batch-inference flow with one export, after a warm-up run."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.batch_inference import batch_inference

    parameters = dict(
        model=job["model"],
        runtime="openvino",
        precision=job["precision"],
        run_date=RUN_DATE,
        batch_size=job["batch_size"],
        shard_size=job["shard_size"],
        overlays=True,
    )
    with prefect_test_harness(server_startup_timeout=120):
        batch_inference(input_uri=job["warmup"], output_uri=job["output"] + "-warmup", **parameters)
        started = time.perf_counter()
        summary = batch_inference(input_uri=job["input"], output_uri=job["output"], **parameters)
        seconds = time.perf_counter() - started
    return {
        "images": summary["processed"],
        "errors": summary["errors"],
        "precision": summary["precision"],
        "seconds": round(seconds, 2),
        "images_per_second": round(summary["processed"] / seconds, 3),
        "peak_rss_mib": common.peak_rss_mib(),
    }


def compare_area_ratios(float_output: str, int8_output: str) -> dict[str, Any]:
    """Per class, |INT8 - float32| area ratio over the images, in percentage points."""
    import pandas as pd

    keys = ["image_uri", "class_name"]
    both = (
        pd.read_parquet(Path(float_output, "area_ratios"))[keys + ["area_ratio"]]
        .merge(
            pd.read_parquet(Path(int8_output, "area_ratios"))[keys + ["area_ratio"]],
            on=keys,
            suffixes=("_float32", "_int8"),
            how="outer",
        )
        .fillna(0.0)
    )
    both["difference_pp"] = (both["area_ratio_int8"] - both["area_ratio_float32"]).abs() * 100
    per_class = both.groupby("class_name")["difference_pp"].agg(["mean", "max"]).round(4)
    return {
        "rows": len(both),
        "mean_pp": round(float(both["difference_pp"].mean()), 4),
        "max_pp": round(float(both["difference_pp"].max()), 4),
        "per_class": {
            name: {"mean_pp": row["mean"], "max_pp": row["max"]}
            for name, row in per_class.iterrows()
        },
    }


def pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.pipeline import WARMUP_IMAGES, write_images

    with tempfile.TemporaryDirectory(prefix="bench-int8-pipeline-") as work:
        root = Path(work)
        os.environ.update(
            PREFECT_HOME=str(root / "prefect-home"),
            PREFECT_LOGGING_LEVEL="WARNING",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        write_images(root / "images", args.images, args.height, args.width)
        write_images(root / "warmup", WARMUP_IMAGES, args.height, args.width)
        write_images(
            root / "calibration",
            args.calibration_images + args.check_images,
            args.height,
            args.width,
            seed=PIPELINE_CALIBRATION_SEED,
        )
        (root / "model").mkdir()
        exports = child(
            {
                "child": "exports",
                "work": str(root / "model"),
                "model": args.model,
                "registry": args.registry,
                "calibration": str(root / "calibration"),
                "calibration_images": args.calibration_images,
                "check": None,
                "check_images": args.check_images,
            }
        )
        if "error" in exports:
            return {"exports": exports}
        base = {
            "child": "flow",
            "input": str(root / "images"),
            "warmup": str(root / "warmup"),
            "batch_size": args.batch_size,
            "shard_size": args.shard_size,
        }
        flows = {
            precision: child(
                {
                    **base,
                    "model": exports[name],
                    "precision": precision,
                    "output": str(root / f"out-{name}"),
                }
            )
            for name, precision in (("float32", "float32"), ("int8", "int8"))
        }
        compared = None
        if not any("error" in flow for flow in flows.values()):
            compared = compare_area_ratios(str(root / "out-float32"), str(root / "out-int8"))
    speedup = common.ratio(
        flows["int8"].get("images_per_second"), flows["float32"].get("images_per_second")
    )
    return {
        "settings": {
            "images": args.images,
            "size": [args.height, args.width],
            "model": args.model or "benchmarks.pipeline.SMALL_MODEL (random weights)",
            "calibration_images": args.calibration_images,
            "batch_size": args.batch_size,
            "shard_size": args.shard_size,
        },
        "exports": {
            "export_int8_seconds": exports["export_int8_seconds"],
            "check": exports["check"],
        },
        "flows": flows,
        "int8_over_float32_images_per_second": speedup,
        "area_ratios_int8_vs_float32": compared,
    }


CHILDREN = {"accuracy": accuracy, "exports": pipeline_exports, "flow": pipeline_flow}


def child(job: dict[str, Any]) -> dict[str, Any]:
    return common.run_child("benchmarks.int8", ["--child", json.dumps(job)])


# ---------------------------------------------------------------------- parent
def main(argv: list[str]) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        return CHILDREN[job.pop("child")](job)
    from mrcnn.hardware import detect

    report = common.header("int8", argv)
    report["machine"]["hardware"] = detect(include_gpus=False).describe()
    report["machine"]["cpu_flags_notable"] = list(detect(include_gpus=False).notable_flags)
    if "accuracy" in args.parts:
        report["accuracy"] = child(
            {
                "child": "accuracy",
                "model": args.model,
                "registry": args.registry,
                "dataset": args.dataset,
                "variants": args.variants,
                "calibration_images": args.calibration_images_list,
                "check_images": args.check_images,
            }
        )
    if "speed" in args.parts:
        report["speed"] = speed(args)
    if "pipeline" in args.parts:
        report["pipeline"] = pipeline(args)
    report["load_average_at_end"] = common.load_average()
    return report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.int8", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=["speed", "pipeline"])
    parser.add_argument(
        "--model",
        help="a trained model: registry reference, run folder, "
        "checkpoint (accuracy: required; pipeline: default random weights)",
    )
    parser.add_argument("--registry", default=os.environ.get("MRCNN_REGISTRY", "registry"))
    parser.add_argument(
        "--dataset",
        help="accuracy: the model's canonical dataset (train "
        "split calibrates, val split is held out)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=(*VARIANTS, BF16_REFERENCE),
        default=[*VARIANTS, BF16_REFERENCE],
    )
    parser.add_argument(
        "--calibration-images",
        dest="calibration_images_list",
        type=int,
        nargs="+",
        default=[100],
        metavar="N",
        help="accuracy: calibration sizes, each measured; pipeline: the first",
    )
    parser.add_argument("--check-images", type=int, default=68, help="held-out images (68)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--peer", choices=("auto", "none"), default="auto")
    parser.add_argument("--images", type=int, default=200, help="pipeline: images (200)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: speed at 256² batch 1, one run; pipeline on 8 images",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.calibration_images = args.calibration_images_list[0]
    if args.quick:
        args.sizes, args.batches, args.runs, args.warmup = [256], [1], 1, 1
        args.images, args.height, args.width, args.shard_size = 8, 240, 320, 4
        args.calibration_images, args.check_images = 4, 4
        args.calibration_images_list = [4]
    if "accuracy" in args.parts and not (args.model and args.dataset):
        parser.error("--parts accuracy needs --model (a trained model) and --dataset")
    if any(size % 64 for size in args.sizes):
        parser.error(f"sizes must be multiples of 64, got {args.sizes}")
    return args


if __name__ == "__main__":
    common.emit(main(sys.argv[1:]))
