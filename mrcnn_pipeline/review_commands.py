"""The ``review``, ``export`` and ``retrain`` subcommands: the loop from predictions back to
annotators, other tools and a better model.

Same pattern as ``mrcnn_pipeline.cli``: ``add_<name>(subparsers)`` declares the arguments
and sets ``handler``; handlers return an exit code and import flows lazily.
"""

from __future__ import annotations

import argparse

from mrcnn_pipeline.arguments import fraction, iso_date, print_summary, registry_argument
from mrcnn_pipeline.prefect_api import ensure_api
from tasks.exports import FORMATS
from tasks.failures import InvalidSetting, MissingInput
from tasks.review import STRATEGIES


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``review select``, ``export`` and ``retrain``."""
    add_review(subparsers)
    add_export(subparsers)
    add_retrain(subparsers)


def add_review(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "review",
        help="choose production images for an annotator",
        description="Images worth correcting, as a labelme folder.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    select = actions.add_parser(
        "select",
        help="run select-for-review: chosen images + labelme JSON + review.json",
        description="Choose up to --budget images that batch inference processed since --since "
        "and write them, each with a labelme JSON of the model's detections, and "
        "review.json (why each was chosen) to --to.",
    )
    select.add_argument(
        "--output",
        required=True,
        metavar="URI",
        help="batch inference's output folder (local or s3://)",
    )
    select.add_argument("--to", required=True, metavar="URI", help="the review folder to write")
    select.add_argument(
        "--since",
        required=True,
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="first run_date to choose from",
    )
    select.add_argument(
        "--until",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="last run_date to choose from (default: the newest)",
    )
    select.add_argument(
        "--budget", type=int, default=50, metavar="N", help="most images to choose (default 50)"
    )
    select.add_argument(
        "--strategy",
        action="append",
        choices=STRATEGIES,
        dest="strategies",
        help="a strategy (repeatable; default all, taking turns in this order: "
        f"{', '.join(STRATEGIES)})",
    )
    select.add_argument("--seed", type=int, default=0, help="the random sample's seed (default 0)")
    select.add_argument(
        "--window-days",
        type=int,
        default=28,
        metavar="N",
        help="area-outlier: the trailing window before --since (default 28)",
    )
    select.add_argument(
        "--score-band",
        type=fraction,
        nargs=2,
        default=(0.5, 0.8),
        metavar=("LOW", "HIGH"),
        help="low-confidence: scores in [LOW, HIGH) (default 0.5 0.8)",
    )
    select.add_argument("--json", action="store_true", help="print the summary as JSON")
    select.set_defaults(handler=run_review_select)


def run_review_select(args: argparse.Namespace) -> int:
    """Handler of ``review select``: run the flow, print what was chosen and why."""
    if args.budget < 1:
        raise InvalidSetting(f"--budget must be at least 1, got {args.budget}")
    from flows.select_for_review import select_for_review

    ensure_api()
    summary = select_for_review(
        output=args.output,
        to=args.to,
        since=args.since,
        until=args.until,
        budget=args.budget,
        strategies=args.strategies,
        seed=args.seed,
        window_days=args.window_days,
        score_band=tuple(args.score_band),
    )
    chosen = ", ".join(f"{name} {count}" for name, count in summary["chosen_by"].items())
    return print_summary(
        summary,
        args.json,
        f"chose {summary['images']} images for review "
        f"({chosen}) into {summary['to']}; why each: {summary['manifest']}",
    )


def add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="predictions as labelme JSON, COCO results or YOLO-seg labels",
        description="Run the export-predictions flow: the newest prediction of each image "
        "processed in the date range, with its image, in the chosen format.",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="URI",
        help="batch inference's output folder (local or s3://)",
    )
    parser.add_argument("--to", required=True, metavar="URI", help="the export folder to write")
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="labelme (a JSON beside each image), coco-results (images.json + "
        "results.json for pycocotools/FiftyOne) or yolo (labels/*.txt + "
        "data.yaml)",
    )
    parser.add_argument(
        "--since", type=iso_date, metavar="YYYY-MM-DD", help="first run_date (default: the oldest)"
    )
    parser.add_argument(
        "--until", type=iso_date, metavar="YYYY-MM-DD", help="last run_date (default: the newest)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Handler of ``export``: run the flow, print one line."""
    from flows.export_predictions import export_predictions

    ensure_api()
    summary = export_predictions(
        output=args.output,
        destination=args.to,
        format=args.format,
        since=args.since,
        until=args.until,
    )
    return print_summary(
        summary,
        args.json,
        f"exported {summary['images']} images and "
        f"{summary['instances']} instances as {summary['format']} to "
        f"{summary['destination']}",
    )


def add_retrain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrain",
        help="fine-tune a registered model on a dataset, gate it on the same val split",
        description="Run the training-pipeline flow on a canonical dataset (e.g. one "
        "'dataset merge' wrote): fine-tune from --from, evaluate the result and the "
        "alias's current version on the dataset's val split, register, and move "
        "the alias only if the new version scores at least as well there.",
    )
    parser.add_argument("--dataset", required=True, metavar="URI", help="canonical dataset")
    parser.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="training config (its name must be the registered model's)",
    )
    parser.add_argument(
        "--from",
        dest="start",
        metavar="REF",
        help="registry reference to fine-tune, e.g. roads@production (default: "
        "the config's init_with)",
    )
    parser.add_argument(
        "--gate-metric",
        default="segm.AP",
        metavar="NAME",
        help="metric the gate compares (default segm.AP)",
    )
    parser.add_argument(
        "--timeout-minutes", type=float, metavar="M", help="stop training after M minutes"
    )
    registry_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run_retrain)


def run_retrain(args: argparse.Namespace) -> int:
    """Handler of ``retrain``: check the dataset, run the flow, print the gate's decision."""
    from tasks import storage

    if not storage.exists(args.dataset):
        raise MissingInput(f"dataset {args.dataset!r} does not exist")
    from flows.training_pipeline import training_pipeline

    ensure_api()
    summary = training_pipeline(
        source=None,
        dataset=args.dataset,
        config=args.config,
        registry=args.registry,
        gate_metric=args.gate_metric,
        init_with=f"model:{args.start}" if args.start else None,
        timeout_minutes=args.timeout_minutes,
    )
    decision = summary["decision"]
    verdict = "promoted to" if decision["promoted"] else "not promoted to"
    return print_summary(
        summary,
        args.json,
        f"{summary['reference']} {verdict} {decision['alias']}: {decision['reason']}",
    )
