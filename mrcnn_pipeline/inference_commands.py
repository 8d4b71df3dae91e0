"""The ``infer``, ``results``, ``compact`` and ``serve`` subcommands of ``mrcnn-pipeline``.

Same pattern as ``mrcnn_pipeline.cli``: ``add_<name>(subparsers)`` declares the arguments
and sets ``handler``; handlers return an exit code and import flows lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mrcnn_pipeline.arguments import (
    backbone_argument,
    fraction,
    iso_date,
    registry_argument,
    runtime_argument,
)
from mrcnn_pipeline.prefect_api import ensure_api
from tasks.failures import InvalidSetting
from tasks.models.runtimes import PRECISIONS


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``infer``, ``results``, ``compact`` and ``serve``."""
    add_infer(subparsers)
    add_results(subparsers)
    add_compact(subparsers)
    add_serve(subparsers)


def add_infer(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="run batch inference on a folder: per-class area ratios in Parquet",
        description="Run the batch-inference flow: images below --input -> area_ratios/, "
        "instances/, errors/, images/ (Parquet, by run_date), overlays/ and a CSV "
        "summary at --output. Images this model version already processed are "
        "skipped.",
    )
    parser.add_argument(
        "--input",
        "--input-folder",
        dest="input",
        required=True,
        metavar="URI",
        help="image folder: a local path or s3://bucket/prefix/ (recursive)",
    )
    parser.add_argument(
        "--output",
        "--output-folder",
        dest="output",
        required=True,
        metavar="URI",
        help="output folder (not inside the input)",
    )
    parser.add_argument("--weights", metavar="FILE", help="weights file (.weights.h5 or .h5)")
    parser.add_argument("--config", metavar="FILE", help="the config.json beside the weights")
    parser.add_argument(
        "--classes",
        metavar="FILE",
        help="class names for --weights (default: classes.json beside --config)",
    )
    parser.add_argument(
        "--model",
        metavar="REF",
        help="instead of --weights: a registry "
        "reference (e.g. roads@production), a run folder, a checkpoint or an "
        "export folder",
    )
    registry_argument(parser)
    runtime_argument(parser)
    backbone_argument(parser)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="float32, bfloat16 or auto for Keras weights and OpenVINO exports "
        "(default: the model's INFERENCE_PRECISION); bfloat16 runs only where "
        "the CPU has AVX512_BF16 or AMX (elsewhere float32), auto picks it there; "
        "int8 runs an INT8 OpenVINO export whose check passed (export-model "
        "--precision int8), and an INT8 export runs only with int8",
    )
    parser.add_argument(
        "--run-date",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="output partition (default: today, UTC)",
    )
    parser.add_argument(
        "--min-confidence",
        type=fraction,
        metavar="F",
        help="keep instances scoring at least F (default: the model config's)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=4,
        metavar="N",
        help="images per detect() call (default 4)",
    )
    parser.add_argument(
        "--shard-size", type=int, default=64, metavar="N", help="images per task (default 64)"
    )
    parser.add_argument(
        "--pattern",
        action="append",
        default=[],
        metavar="GLOB",
        help="only paths below --input matching GLOB (repeatable)",
    )
    parser.add_argument(
        "--path-pattern",
        metavar="REGEX",
        help="regular expression with named groups, searched in each image's "
        "path below --input; the groups become images.path_fields (beside "
        "hive-style key=value folders), e.g. "
        "'(?P<site>[^/]+)/(?P<camera>cam\\d+)/'",
    )
    parser.add_argument(
        "--no-overlays",
        dest="overlays",
        action="store_false",
        help="do not write the annotated JPEGs",
    )
    parser.add_argument(
        "--reprocess", action="store_true", help="process images this model version already did"
    )
    parser.add_argument(
        "--no-csv", dest="csv", action="store_false", help="do not write results_<run_date>.csv"
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        help="force the CPU, or require a GPU (default: a GPU when present)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run_infer)


def run_infer(args: argparse.Namespace) -> int:
    """Handler of ``infer``: run the flow with a progress bar, write the CSV, print a summary."""
    _select_device(args.device)
    from rich.progress import Progress

    from flows.batch_inference import batch_inference, progress_listener
    from mrcnn_pipeline.results import image_csv
    from tasks import storage

    ensure_api()
    with Progress(disable=not sys.stderr.isatty()) as bar:
        images = bar.add_task("images", total=None)
        with progress_listener(lambda done, total: bar.update(images, completed=done, total=total)):
            summary = batch_inference(
                input_uri=args.input,
                output_uri=args.output,
                model=args.model,
                weights=args.weights,
                config=args.config,
                classes=args.classes,
                registry=args.registry,
                run_date=args.run_date,
                min_confidence=args.min_confidence,
                batch_size=args.batch_size,
                shard_size=args.shard_size,
                overlays=args.overlays,
                reprocess=args.reprocess,
                patterns=args.pattern or None,
                path_pattern=args.path_pattern,
                runtime=args.runtime,
                precision=args.precision,
                backbones=args.backbones or None,
            )
    csv = None
    if args.csv:
        csv = storage.write_bytes(
            storage.join(args.output, f"results_{summary.run_date}.csv"),
            image_csv(args.output, summary.run_date).encode("utf-8"),
        )
    if args.json:
        print(json.dumps({**summary.as_dict(), **({"csv": csv} if csv else {})}, indent=2))
        return 0
    precision = "/".join(summary.precision) or "no shard ran"
    print(
        f"{summary.processed} images processed, {summary.skipped} skipped (already done), "
        f"{summary.errors} errors; model {summary.model_name} {summary.model_version} "
        f"({precision}), run_date {summary.run_date}"
    )
    print(
        f"tables: {args.output} (area_ratios/, instances/, errors/, images/)"
        + (f"; summary: {csv}" if csv else "")
    )
    return 0


def _select_device(device: str | None) -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # read when TensorFlow loads, later
    elif device == "gpu":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            raise InvalidSetting(
                "--device gpu: TensorFlow sees no GPU (install the 'gpu' extra "
                "and the NVIDIA driver, or use --device cpu)"
            )


def add_results(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "results",
        help="summarise batch-inference outputs per day and class (DuckDB)",
        description="Per run_date and class: images, images with the class, instances, "
        "mean and max area ratio, read from <output>/area_ratios with DuckDB.",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="URI",
        help="the batch-inference output folder (local or s3://)",
    )
    parser.add_argument(
        "--since", type=iso_date, metavar="YYYY-MM-DD", help="only run dates on or after this day"
    )
    parser.add_argument("--class", dest="class_name", metavar="NAME", help="only this class")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument(
        "--duckdb",
        metavar="FILE",
        help="instead of the summary, write FILE: a DuckDB database of views "
        "over the output's tables and daily_class_summary (local outputs)",
    )
    parser.set_defaults(handler=run_results)


def run_results(args: argparse.Namespace) -> int:
    """Handler of ``results``: query and print, or write the views file."""
    if args.duckdb:
        if args.since or args.class_name:
            raise InvalidSetting(
                "--duckdb writes views over every run_date and class; filter "
                "in SQL instead of --since/--class"
            )
        from mrcnn_pipeline.duckdb_views import write_views

        print(write_views(args.output, args.duckdb).describe())
        return 0
    from mrcnn_pipeline.results import render, summarize

    columns, rows = summarize(args.output, args.since, args.class_name)
    print(render(columns, rows, args.format), end="")
    return 0


def add_compact(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compact",
        help="rewrite a month's small result files as a few large ones",
        description="Run the compact-tables flow: each run_date partition of --month, per "
        "table, becomes one file (or files of at least --target-mb), through the "
        "commit protocol, so readers never miss a row meanwhile.",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="URI",
        help="the batch-inference output folder (local or s3://)",
    )
    parser.add_argument("--month", required=True, metavar="YYYY-MM", help="the month to compact")
    parser.add_argument(
        "--target-mb",
        type=float,
        default=64.0,
        metavar="MB",
        help="smallest size of a compacted file, in MiB (default 64)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run_compact)


def run_compact(args: argparse.Namespace) -> int:
    """Handler of ``compact``: check the month, run the flow, print a summary."""
    from tasks.tables.compaction import month_days

    month_days(args.month)  # a bad month is one line, before Prefect starts
    from flows.compact_tables import compact_tables

    ensure_api()
    summary = compact_tables(output=args.output, month=args.month, target_mb=args.target_mb)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
        return 0
    print(
        f"{args.month}: {len(summary.partitions)} partitions compacted, "
        f"{summary.files_before} files -> {summary.files_after}"
        + (f"; {summary.finished} crashed commits finished" if summary.finished else "")
    )
    return 0


def add_serve(subparsers: argparse._SubParsersAction) -> None:
    from deployments.serve import add_arguments

    parser = subparsers.add_parser(
        "serve",
        help="serve the deployments (batch-inference/nightly, ...) until stopped",
        description="Same as python -m deployments.serve: serves batch-inference/nightly "
        "(cron 0 2 * * *), training-pipeline/on-demand and convert-masks/on-demand.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Handler of ``serve``: a Prefect API that answers, then the deployments until stopped."""
    from deployments.serve import serve_from_arguments

    ensure_api()
    return serve_from_arguments(args)
