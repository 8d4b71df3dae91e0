"""Argument types shared by the subcommands (argparse `type=` callables), and their output."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import re
from collections.abc import Callable
from typing import Any

from tasks.models.runtime_registry import DEFAULT_RUNTIME, NAMES, RUNTIMES

# MODULE:NAME, e.g. mypackage.backbones:efficientnet_b0 (NAME may be dotted: Class.method).
CALLABLE_REFERENCE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


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
    parser.add_argument(
        "--registry",
        default=os.environ.get("MRCNN_REGISTRY", "registry"),
        metavar="URI",
        help="model registry folder or s3:// URI (default: $MRCNN_REGISTRY or ./registry)",
    )


def runtime_argument(parser: argparse.ArgumentParser) -> None:
    """``--runtime``: which runtime runs the model (``tasks.models.runtime_registry``)."""
    parser.add_argument(
        "--runtime",
        choices=NAMES,
        default=DEFAULT_RUNTIME,
        help="; ".join(runtime.help for runtime in RUNTIMES) + f" (default: {DEFAULT_RUNTIME})",
    )


def backbone_argument(parser: argparse.ArgumentParser) -> None:
    """``--backbone-module MODULE:NAME``: a callable backbone the user allows for the model."""
    parser.add_argument(
        "--backbone-module",
        dest="backbones",
        action="append",
        default=[],
        type=imported_callable,
        metavar="MODULE:NAME",
        help="a callable backbone the model's config names (repeatable); "
        "imported because you name it here, never because a stored config "
        "does: a config naming any other code is refused",
    )


def imported_callable(text: str) -> Callable[..., Any]:
    """The callable ``MODULE:NAME`` names, imported because the user wrote it as an argument."""
    if not CALLABLE_REFERENCE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected MODULE:NAME (e.g. mypackage.backbones:efficientnet), got {text!r}"
        )
    module_name, _, qualname = text.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and f"{module_name}.".startswith(f"{error.name}."):  # not a dependency
            raise argparse.ArgumentTypeError(
                f"no module {module_name!r} to import {text!r} from"
            ) from None
        raise
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise argparse.ArgumentTypeError(f"module {module_name!r} has no {qualname!r}")
        target = getattr(target, part)
    if not callable(target):
        raise argparse.ArgumentTypeError(f"{text!r} is not callable")
    return target


def print_summary(summary: dict[str, Any], as_json: bool, line: str) -> int:
    """Print a flow's summary as JSON (``--json``) or as one line; returns exit code 0."""
    print(json.dumps(summary, indent=2) if as_json else line)
    return 0
