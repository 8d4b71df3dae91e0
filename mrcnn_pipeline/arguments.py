"""Argument types shared by the subcommands (argparse `type=` callables), and their output."""

from __future__ import annotations

import argparse
import datetime
import json
import os
from typing import Any


def fraction(text: str) -> float:
    """A number in [0, 1] (a validation split, a confidence threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def iso_date(text: str) -> datetime.date:
    """A date written ``YYYY-MM-DD``."""
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def registry_argument(parser: argparse.ArgumentParser) -> None:
    """``--registry URI``, the same for every subcommand that reads the model registry."""
    parser.add_argument("--registry", default=os.environ.get("MRCNN_REGISTRY", "registry"),
                        metavar="URI", help="model registry folder or s3:// URI (default: "
                        "$MRCNN_REGISTRY or ./registry)")


def runtime_argument(parser: argparse.ArgumentParser) -> None:
    """``--runtime``: which runtime runs the model (see ``tasks.models.RUNTIMES``)."""
    parser.add_argument("--runtime", choices=("tensorflow", "onnxruntime", "openvino"),
                        default="tensorflow", help="tensorflow (Keras weights, SavedModel "
                        "exports; default), onnxruntime (ONNX exports) or openvino (OpenVINO "
                        "IR exports)")


def print_summary(summary: dict[str, Any], as_json: bool, line: str) -> int:
    """Print a flow's summary as JSON (``--json``) or as one line; returns exit code 0."""
    print(json.dumps(summary, indent=2) if as_json else line)
    return 0
