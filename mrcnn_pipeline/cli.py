"""``mrcnn-pipeline``: one command line for the project's flows.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its arguments
and sets ``handler``; the handler takes the parsed arguments and returns an exit code.
Flows are imported inside handlers so that ``--help`` stays fast. Errors the user can fix
(``tasks.failures.UserError``: bad paths, settings, annotations under ``--strict``, a store
that does not answer) print one line to stderr and exit 1; add ``--traceback`` to see where
they came from. Any other exception is a bug: it prints its traceback and where to report it,
and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

# Before Prefect or TensorFlow load: no telemetry (its SQLite writes race with the temporary
# server's and print "database is locked"), and only TensorFlow's errors.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mrcnn_pipeline import (
    doctor,
    inference_commands,
    model_commands,
    report_commands,
    review_commands,
)
from mrcnn_pipeline.arguments import (
    backbone_argument,
    fraction,
    registry_argument,
    runtime_argument,
)
from mrcnn_pipeline.prefect_api import ensure_api
from tasks.annotations.formats import ReaderOption
from tasks.annotations.registry import FORMATS, NAMES, all_options, formats_taking, get_format
from tasks.failures import InvalidSetting, MissingInput, UserError

if TYPE_CHECKING:  # the flows load inside the handlers, so that --help stays fast
    from flows.convert_masks import ConversionSummary

BUG_REPORT = (
    "mrcnn-pipeline: this is a bug in mrcnn-pipeline, not a problem with your input; "
    "please report it on the project's issue tracker with the command you ran and "
    "the traceback above (docs/concepts/failures.md)"
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mrcnn-pipeline",
        description=(
            "Mask R-CNN pipelines: convert annotations, train, evaluate, register, infer."
        ),
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show full tracebacks and Prefect's error logs"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_convert(subparsers)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_register(subparsers)
    _add_models(subparsers)
    _add_dataset(subparsers)
    model_commands.add_commands(subparsers)  # export-model
    inference_commands.add_commands(subparsers)  # infer, results, serve
    review_commands.add_commands(subparsers)  # review select, export, retrain
    report_commands.add_commands(subparsers)  # report
    doctor.add_commands(subparsers)  # doctor
    return parser


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help=f"convert annotations ({', '.join(NAMES)}) to the canonical dataset",
        description="Run the convert-masks flow: annotations -> images/, annotations/"
        "{train,val}.json (COCO, RLE masks) and report.json at --output. Formats "
        "and their layouts: docs/reference/annotation-formats.md.",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=NAMES,
        help="input format: "
        + "; ".join(f"{fmt.name}: {fmt.help} [{fmt.looks_for}]" for fmt in FORMATS),
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="URI",
        help="input folder or file: a local path or s3://bucket/prefix",
    )
    parser.add_argument("--output", required=True, metavar="URI", help="output folder")
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="labels file, one class per line (default: the labels found)",
    )
    parser.add_argument(
        "--alias",
        action="append",
        default=[],
        type=_alias,
        metavar="LABEL=CLASS",
        help="map an annotated label to a class (repeatable), e.g. car1=car",
    )
    parser.add_argument(
        "--alias-prefix",
        action="store_true",
        help="map labels by prefix: car12 -> car (the longest listed class "
        "it starts with, or without trailing digits)",
    )
    parser.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.2,
        metavar="F",
        help="share of images in val, chosen by a hash of the path (default 0.2)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first skipped file or dropped/clipped shape",
    )
    for option in all_options():
        default = f"; default: {option.default}" if option.default is not None else ""
        parser.add_argument(
            option.flag,
            dest=_option_dest(option),
            metavar=option.metavar,
            help=f"{option.help} (--format {', '.join(formats_taking(option))}{default})",
        )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run_convert)


def _option_dest(option: ReaderOption) -> str:
    return "format_option_" + option.flag.lstrip("-").replace("-", "_")


def _format_options(args: argparse.Namespace) -> dict[str, str]:
    """The format options given on the command line, by name.

    Raises:
        ValueError: an option the chosen format does not take.
    """
    taken = get_format(args.format).options
    given = {}
    for option in all_options():
        value = getattr(args, _option_dest(option))
        if value is None:
            continue
        if option not in taken:
            raise InvalidSetting(
                f"{option.flag} does not apply to --format {args.format} (only to "
                f"--format {', '.join(formats_taking(option))})"
            )
        given[option.name] = value
    return given


def _alias(text: str) -> tuple[str, str]:
    label, sep, name = text.partition("=")
    if not sep or not label.strip() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected LABEL=CLASS, got {text!r}")
    return label.strip(), name.strip()


def run_convert(args: argparse.Namespace) -> int:
    """Handler of ``convert``: check the paths, run the flow, print the summary."""
    from tasks import storage

    if not storage.exists(args.input):
        raise MissingInput(f"input {args.input!r} does not exist")
    if args.labels and not storage.is_file(args.labels):
        raise MissingInput(f"labels file {args.labels!r} not found")
    options = _format_options(args)
    from flows.convert_masks import convert_masks

    ensure_api()
    summary = convert_masks(
        source=args.input,
        destination=args.output,
        format=args.format,
        labels=args.labels,
        aliases=dict(args.alias) or None,
        alias_prefix=args.alias_prefix,
        val_fraction=args.val_fraction,
        strict=args.strict,
        options=options,
    )
    _print_summary(summary, args.json)
    return 0


def _print_summary(summary: ConversionSummary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
        return
    items, images = summary.items, summary.images
    print(
        f"converted {items.converted} of {items.found} items "
        f"({items.skipped} skipped, {summary.issues} issues in total)"
    )
    print(
        f"images: train {images.train}, val {images.val}; "
        f"classes: {', '.join(summary.labels) or '-'}"
    )
    print(f"report: {summary.report}")


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on a canonical dataset (flow train-model)",
        description="Run the train-model flow: the config's stages, a checkpoint per epoch in "
        "the run folder, metrics.json and loss_curve.png there.",
    )
    parser.add_argument("--dataset", required=True, metavar="URI", help="canonical dataset")
    parser.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="training config (YAML/JSON file or URI) or preset:shapes (light, "
        "small objects), preset:seed-like (the legacy TF 1.15 repository's "
        "384² road setup)",
    )
    parser.add_argument(
        "--run-dir",
        metavar="URI",
        help="run folder (default: "
        "<registry>/.runs/<name>-<time>; with --resume the newest of that name)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue after the run folder's newest checkpoint"
    )
    parser.add_argument(
        "--timeout-minutes", type=float, metavar="M", help="stop training after M minutes"
    )
    parser.add_argument(
        "--auto-config",
        action="store_true",
        help="choose image size, anchors, instance limits, ROIs and the mean pixel "
        "from the dataset (values the config sets win); prints them as a table",
    )
    registry_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``train``: validate the config and dataset, run the flow, print the summary."""
    from tasks import storage
    from tasks.training.config import load_training_config

    training = load_training_config(args.config)
    if not storage.exists(args.dataset):
        raise MissingInput(f"dataset {args.dataset!r} does not exist")
    from flows.train_model import train_model

    config = {**training.to_dict(), **({"auto_config": True} if args.auto_config else {})}
    ensure_api()
    summary = train_model(
        dataset=args.dataset,
        config=config,
        run_dir=args.run_dir,
        resume=args.resume,
        registry=args.registry,
        timeout_minutes=args.timeout_minutes,
    )
    if summary["auto_config"] and not args.json:
        from tasks.training.auto_config import choices_table

        print("config chosen from the data:\n" + choices_table(summary["auto_config"]))
    _print_result(
        summary,
        args.json,
        [
            ("run folder", "run_dir"),
            ("epochs", "epochs"),
            ("checkpoint", "checkpoint"),
            ("metrics", "metrics"),
        ],
    )
    return 0


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="COCO AP and area-ratio error on the val split (flow evaluate-model)",
        description="Run the evaluate-model flow on a registry reference, a run folder, a "
        "checkpoint or an export folder.",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="REF",
        help="NAME@ALIAS, NAME@vN, a training run folder, a checkpoint or an export folder URI",
    )
    parser.add_argument("--dataset", required=True, metavar="URI", help="canonical dataset")
    parser.add_argument("--output", metavar="URI", help="folder for metrics.json")
    registry_argument(parser)
    runtime_argument(parser)
    backbone_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``evaluate``."""
    from flows.evaluate_model import evaluate_model

    ensure_api()
    metrics = evaluate_model(
        model=args.model,
        dataset=args.dataset,
        registry=args.registry,
        output=args.output,
        runtime=args.runtime,
        backbones=args.backbones or None,
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(
        f"{'class':20} {'bbox AP':>8} {'segm AP':>8} {'area MAE (pp)':>14} {'95 % CI':>17} "
        f"{'bias':>8} {'nothing':>8} {'Otsu':>8}"
    )
    from tasks.evaluation import metrics_table

    for row in metrics_table(metrics):
        interval = f"[{_cell(row['area_mae_ci95_low'])}, {_cell(row['area_mae_ci95_high'])}]"
        print(
            f"{row['class']:20} {_cell(row['bbox_AP']):>8} {_cell(row['segm_AP']):>8} "
            f"{_cell(row['area_mae_pp']):>14} {interval:>17} {_cell(row['area_bias_pp']):>8} "
            f"{_cell(row['nothing_mae_pp']):>8} {_cell(row['otsu_mae_pp']):>8}"
        )
    print(
        f"segm AP {_cell(metrics['segm']['AP'])}, AP50 {_cell(metrics['segm']['AP50'])}, "
        f"AP75 {_cell(metrics['segm']['AP75'])}; bbox AP {_cell(metrics['bbox']['AP'])}"
    )
    print(f"metrics: {metrics['metrics_uri']}")
    return 0


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alias", default="production", help="alias to move (default: production)")
    parser.add_argument(
        "--metric",
        default="segm.AP",
        help="metrics.json entry the gate compares (default: segm.AP)",
    )
    parser.add_argument(
        "--lower-is-better",
        action="store_true",
        help="for error metrics, e.g. area_ratio_error.mean_mae_pp",
    )
    parser.add_argument(
        "--force", action="store_true", help="move the alias even if the gate fails"
    )
    parser.add_argument("--reason", help="why (required with --force)")


def _add_register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "register",
        help="publish a finished run as a new model version (flow register-model)",
        description="Run the register-model flow: a new immutable version, then the promotion "
        "gate on --alias.",
    )
    parser.add_argument("--run-dir", required=True, metavar="URI", help="training run folder")
    parser.add_argument(
        "--metrics",
        metavar="URI",
        help="evaluation metrics.json (default: <run-dir>/evaluation/metrics.json)",
    )
    parser.add_argument("--name", help="model name (default: the run's)")
    parser.add_argument("--no-promote", action="store_true", help="register without the gate")
    _gate_arguments(parser)
    registry_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run_register)


def run_register(args: argparse.Namespace) -> int:
    """Handler of ``register``."""
    from flows.register_model import register_model

    ensure_api()
    result = register_model(
        run_dir=args.run_dir,
        registry=args.registry,
        metrics=args.metrics,
        name=args.name,
        alias=args.alias,
        promote=not args.no_promote,
        gate_metric=args.metric,
        higher_is_better=not args.lower_is_better,
        force=args.force,
        reason=args.reason,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"registered {result['reference']} at {result['uri']}")
    if result["decision"]:
        _print_decision(result["decision"])
    return 0


def _print_decision(decision: dict[str, Any]) -> None:
    verdict = "promoted to" if decision["promoted"] else "not promoted to"
    print(
        f"v{decision['candidate']['version']} {verdict} {decision['alias']}: {decision['reason']}"
    )


def _add_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, show, promote and alias registry models",
        description="Read and manage the model registry.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="models, or the versions and aliases of one")
    listing.add_argument("name", nargs="?", help="a model name")
    show = actions.add_parser("show", help="a version's metrics, lineage and aliases")
    show.add_argument("reference", help="NAME@vN, NAME@ALIAS or NAME (newest)")
    promote = actions.add_parser("promote", help="apply the promotion gate to a version")
    promote.add_argument("reference", help="the version to promote")
    _gate_arguments(promote)
    alias = actions.add_parser("alias", help="point an alias at a version (no gate)")
    alias.add_argument("reference", help="the version, e.g. road@v3")
    alias.add_argument("alias", help="alias name, e.g. staging")
    alias.add_argument("--reason", help="recorded in the alias file")
    for action in (listing, show, promote, alias):
        registry_argument(action)
        action.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=run_models)


def run_models(args: argparse.Namespace) -> int:
    """Handler of ``models``: registry operations, no flow run."""
    from tasks import registry

    if args.action == "list":
        result: Any = _model_listing(args.registry, args.name)
    elif args.action == "show":
        version = registry.resolve(args.reference, args.registry)
        aliases = {
            alias: record
            for alias, record in registry.read_aliases(args.registry, version.name).items()
            if record["version"] == version.version
        }
        result = {
            "reference": version.reference,
            "uri": version.uri,
            "aliases": aliases,
            "classes": version.read_json("classes.json"),
            "metrics": version.read_json("metrics.json"),
            "lineage": version.read_json("lineage.json"),
        }
    elif args.action == "promote":
        result = registry.promote(
            registry.resolve(args.reference, args.registry),
            args.alias,
            args.metric,
            not args.lower_is_better,
            args.force,
            args.reason,
        )
    else:
        version = registry.resolve(args.reference, args.registry)
        result = {"alias": args.alias, **registry.set_alias(version, args.alias, args.reason)}
    if args.json or args.action == "show":
        print(json.dumps(result, indent=2))
    elif args.action == "list":
        print("\n".join(result) if isinstance(result, list) else _versions_text(result))
    elif args.action == "promote":
        _print_decision(result)
    else:
        print(f"{args.alias} -> v{result['version']} (was {result['previous'] or '-'})")
    return 0


def _model_listing(registry_uri: str, name: str | None) -> Any:
    from tasks import registry

    if name is None:
        return registry.list_models(registry_uri)
    versions = registry.list_versions(registry_uri, name)
    if not versions:
        raise MissingInput(f"model {name!r} not found in registry {registry_uri!r}")
    return {
        "name": name,
        "versions": versions,
        "aliases": {
            alias: record["version"]
            for alias, record in registry.read_aliases(registry_uri, name).items()
        },
    }


def _versions_text(listing: dict[str, Any]) -> str:
    by_version: dict[int, list[str]] = {}
    for alias, version in listing["aliases"].items():
        by_version.setdefault(version, []).append(alias)
    return "\n".join(
        f"{listing['name']}@v{v}"
        + (f"  ({', '.join(sorted(by_version[v]))})" if v in by_version else "")
        for v in listing["versions"]
    )


def _add_dataset(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="canonical datasets: merge reviewed additions",
        description="Work on canonical datasets.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    merge = actions.add_parser(
        "merge",
        help="a new dataset from a base and reviewed additions (flow merge-datasets)",
        description="Run the merge-datasets flow: images of --add replace base's annotations "
        "of the same image bytes, base images keep their split, new images are "
        "split by a hash of their bytes; dataset.json records both parents.",
    )
    merge.add_argument("--base", required=True, metavar="URI", help="current canonical dataset")
    merge.add_argument(
        "--add",
        required=True,
        metavar="URI",
        help="canonical dataset of reviewed images (e.g. convert's output)",
    )
    merge.add_argument(
        "--output",
        required=True,
        metavar="URI",
        help="folder of the new dataset (not inside --base or --add)",
    )
    merge.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.2,
        metavar="F",
        help="share of new images in val, chosen by a hash of their bytes (default 0.2)",
    )
    merge.add_argument("--json", action="store_true", help="print the summary as JSON")
    merge.set_defaults(handler=run_dataset_merge)


def run_dataset_merge(args: argparse.Namespace) -> int:
    """Handler of ``dataset merge``: check the paths, run the flow, print one line."""
    from tasks.datasets.io import check_locations, locate_dataset

    check_locations(args.base, args.add, args.output)
    locate_dataset(args.base, "base")
    locate_dataset(args.add, "add")
    from flows.merge_datasets import merge_datasets

    ensure_api()
    summary = merge_datasets(
        base=args.base, add=args.add, output=args.output, val_fraction=args.val_fraction
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"merged into {summary['output']}: {summary['kept']} kept, {summary['replaced']} "
        f"replaced, {summary['added']} added; images train {summary['images']['train']}, "
        f"val {summary['images']['val']}; new classes: {', '.join(summary['new_labels']) or '-'}"
    )
    return 0


def _print_result(summary: dict[str, Any], as_json: bool, fields: list[tuple[str, str]]) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for label, key in fields:
        print(f"{label}: {summary[key]}")


class _UserErrorFilter(logging.Filter):
    """Hide console records about user errors: the CLI prints them as one line itself.

    Prefect reports a failed task twice: a record with the exception, and "Finished in state
    Failed('Task run encountered an exception ValueError: ...')" without it; both go.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            return not isinstance(record.exc_info[1], UserError)
        if record.levelno < logging.ERROR:
            return True
        failed = _FAILED_STATE.search(record.getMessage())
        return not (failed and failed.group(1) in _user_error_names())


_FAILED_STATE = re.compile(r"^Finished in state Failed\(.*encountered an exception (\w+):")


def _user_error_names() -> set[str]:
    names, pending = set(), [UserError]
    while pending:
        kind = pending.pop()
        names.add(kind.__name__)
        pending.extend(kind.__subclasses__())
    return names


def _quiet_tracebacks() -> None:
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect installs its console handler lazily; install it now
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _UserErrorFilter) for f in handler.filters):
            handler.addFilter(_UserErrorFilter())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mrcnn-pipeline``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error argparse already explained
        return int(stop.code or 0)
    if not args.traceback:
        _quiet_tracebacks()
    try:
        return args.handler(args)
    except UserError as error:
        if args.traceback:
            raise
        print(f"mrcnn-pipeline {args.command}: error: {error}", file=sys.stderr)
        return 1
    except Exception:  # a bug: its traceback, and where to report it
        traceback.print_exc()
        print(BUG_REPORT, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
