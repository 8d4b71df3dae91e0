"""The ``report`` subcommand: the nightly report of one run_date, as an HTML page.

Same pattern as ``mrcnn_pipeline.cli``: ``add_<name>(subparsers)`` declares the arguments
and sets ``handler``; handlers return an exit code and import flows lazily.
"""

from __future__ import annotations

import argparse

from mrcnn_pipeline.arguments import iso_date, print_summary, registry_argument
from mrcnn_pipeline.prefect_api import ensure_api
from tasks.failures import InvalidSetting


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report``."""
    parser = subparsers.add_parser(
        "report",
        help="the nightly report: trends, drift and the images worth a look (HTML)",
        description="Run the nightly-report flow: <output>/reports/run_date=D/index.html with "
        "per-class trends over the window, drift statistics (also written to the "
        "drift table), errors, a gallery and the accuracy of the night's model "
        "versions on their val split (from the registry); the event "
        "mrcnn.drift.detected when a class drifts or the error or no-detection rate "
        "jumps.",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="URI",
        help="batch inference's output folder (local or s3://)",
    )
    parser.add_argument(
        "--date",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="the run_date to report (default: today, UTC)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=28,
        metavar="DAYS",
        help="days before --date to compare with (default 28)",
    )
    parser.add_argument(
        "--path-field",
        metavar="NAME",
        help="break the numbers down by this path field of the images table",
    )
    parser.add_argument(
        "--gallery", type=int, default=12, metavar="N", help="images in the gallery (default 12)"
    )
    registry_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``report``: run the flow, print where the page is and what drifts."""
    if args.window < 1:
        raise InvalidSetting(f"--window must be at least 1 day, got {args.window}")
    from flows.nightly_report import nightly_report

    ensure_api()
    summary = nightly_report(
        output=args.output,
        date=args.date,
        window=args.window,
        path_field=args.path_field,
        gallery=args.gallery,
        registry=args.registry,
    )
    return print_summary(
        summary.as_dict(),
        args.json,
        f"report: {summary.report} "
        f"({summary.images} images; drifting: "
        f"{', '.join(summary.drifting) or 'none'})",
    )
