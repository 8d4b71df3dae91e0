"""``mrcnn-pipeline``: one command line for the project's flows.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its arguments
and sets ``handler``; the handler takes the parsed arguments and returns an exit code.
Flows are imported inside handlers so that ``--help`` stays fast. Errors the user can fix
(bad paths, bad annotations under ``--strict``) print one line to stderr and exit 1; add
``--traceback`` to see where they came from.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

# Before Prefect or TensorFlow load: no telemetry (its SQLite writes race with the temporary
# server's and print "database is locked"), and only TensorFlow's errors.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tasks.annotations import FORMATS  # noqa: E402

# Errors that describe bad input or environment; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, OSError, KeyError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mrcnn-pipeline", description=(
        "Mask R-CNN pipelines: convert annotations, train, evaluate, register, infer."))
    parser.add_argument("--traceback", action="store_true",
                        help="show full tracebacks and Prefect's error logs")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_convert(subparsers)
    return parser


def _add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert labelme/legacy/VIA/COCO annotations to the canonical dataset",
        description="Run the convert-masks flow: annotations -> images/, annotations/"
                    "{train,val}.json (COCO, RLE masks) and report.json at --output.")
    parser.add_argument("--format", required=True, choices=FORMATS, help="input format")
    parser.add_argument("--input", required=True, metavar="URI",
                        help="input folder or file: a local path or s3://bucket/prefix")
    parser.add_argument("--output", required=True, metavar="URI", help="output folder")
    parser.add_argument("--labels", metavar="FILE",
                        help="labels file, one class per line (default: the labels found)")
    parser.add_argument("--alias", action="append", default=[], type=_alias,
                        metavar="LABEL=CLASS", help="map an annotated label to a class "
                        "(repeatable), e.g. car1=car")
    parser.add_argument("--alias-prefix", action="store_true",
                        help="map labels by prefix: car12 -> car (the longest listed class "
                        "it starts with, or without trailing digits)")
    parser.add_argument("--val-fraction", type=_fraction, default=0.2, metavar="F",
                        help="share of images in val, chosen by a hash of the path (default 0.2)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on the first skipped file or dropped/clipped shape")
    parser.add_argument("--via-attribute", default="label", metavar="NAME",
                        help="VIA region attribute holding the class (default: label)")
    parser.add_argument("--default-label", metavar="CLASS",
                        help="VIA: class of regions without that attribute")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run_convert)


def _alias(text: str) -> tuple[str, str]:
    label, sep, name = text.partition("=")
    if not sep or not label.strip() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected LABEL=CLASS, got {text!r}")
    return label.strip(), name.strip()


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def run_convert(args: argparse.Namespace) -> int:
    """Handler of ``convert``: check the paths, run the flow, print the summary."""
    from tasks import storage

    if not storage.exists(args.input):
        raise FileNotFoundError(f"input {args.input!r} does not exist")
    if args.labels and not storage.is_file(args.labels):
        raise FileNotFoundError(f"labels file {args.labels!r} not found")
    from flows.convert_masks import convert_masks

    summary = convert_masks(source=args.input, destination=args.output, format=args.format,
                            labels=args.labels, aliases=dict(args.alias) or None,
                            alias_prefix=args.alias_prefix, val_fraction=args.val_fraction,
                            strict=args.strict, via_attribute=args.via_attribute,
                            default_label=args.default_label)
    _print_summary(summary, args.json)
    return 0


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    items, images = summary["items"], summary["images"]
    print(f"converted {items['converted']} of {items['found']} items "
          f"({items['skipped']} skipped, {summary['issues']} issues in total)")
    print(f"images: train {images['train']}, val {images['val']}; "
          f"classes: {', '.join(summary['labels']) or '-'}")
    print(f"report: {summary['report']}")


class _UserErrorFilter(logging.Filter):
    """Hide console records about user errors: the CLI prints them as one line itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], USER_ERRORS))


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
    except USER_ERRORS as error:
        if args.traceback:
            raise
        print(f"mrcnn-pipeline {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
