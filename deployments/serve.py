"""Serve the project's deployments from one process: ``python -m deployments.serve``.

- ``batch-inference/nightly``: cron ``0 2 * * *`` in a configurable timezone, at most one run
  at a time, default parameters from a config file and/or the environment;
- ``select-for-review/weekly``: cron ``0 6 * * 1`` (Mondays) in the same timezone: the past
  week's images worth correcting, into a review folder per week;
- ``training-pipeline/on-demand`` (when ``flows.training_pipeline`` exists) and
  ``convert-masks/on-demand``: run with ``prefect deployment run``.

Settings, later ones winning: built-in defaults, the YAML/JSON file given by ``--config`` or
``MRCNN_DEPLOYMENTS_CONFIG``, environment variables, command-line options::

    timezone: Europe/Berlin        # MRCNN_TIMEZONE        (default UTC)
    cron: "0 2 * * *"              # MRCNN_NIGHTLY_CRON
    nightly:                       # default parameters of batch-inference/nightly
      input_uri: s3://bucket/incoming/     # MRCNN_INPUT_URI
      output_uri: s3://bucket/results/     # MRCNN_OUTPUT_URI
      model: roads@production              # MRCNN_MODEL
      registry: s3://bucket/registry/  # MRCNN_REGISTRY
    review_cron: "0 6 * * 1"       # MRCNN_REVIEW_CRON
    review:                        # default parameters of select-for-review/weekly
      output: s3://bucket/results/         # MRCNN_OUTPUT_URI
      to: s3://bucket/review/{date}/       # MRCNN_REVIEW_URI ({date}: the run's date)
      budget: 50

Stopping the process (SIGTERM) leaves the deployments active (``pause_on_shutdown=False``),
so a restarted server process picks the schedule up again. Several machines: use
``deployments/prefect.yaml`` with a process work pool and workers instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import sys
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from tasks.failures import InvalidInput, InvalidSetting, MissingInput

NIGHTLY_CRON = "0 2 * * *"
REVIEW_CRON = "0 6 * * 1"
SETTINGS_KEYS = ("timezone", "cron", "nightly", "review_cron", "review")
ENVIRONMENT = {
    "timezone": "MRCNN_TIMEZONE",
    "cron": "MRCNN_NIGHTLY_CRON",
    "review_cron": "MRCNN_REVIEW_CRON",
}
PARAMETER_ENVIRONMENT = {
    "input_uri": "MRCNN_INPUT_URI",
    "output_uri": "MRCNN_OUTPUT_URI",
    "model": "MRCNN_MODEL",
    "registry": "MRCNN_REGISTRY",
}
REVIEW_ENVIRONMENT = {"output": "MRCNN_OUTPUT_URI", "to": "MRCNN_REVIEW_URI"}


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Schedule and default parameters of the nightly deployment."""

    timezone: str = "UTC"
    cron: str = NIGHTLY_CRON
    nightly: dict[str, Any] = dataclasses.field(default_factory=dict)
    review_cron: str = REVIEW_CRON
    review: dict[str, Any] = dataclasses.field(default_factory=dict)


def load_settings(
    config_file: str | None = None, environ: Mapping[str, str] | None = None
) -> ServeSettings:
    """Defaults, then the config file, then the environment.

    Raises:
        FileNotFoundError: the config file does not exist.
        ValueError: unknown keys, an unknown timezone, or parameters batch-inference lacks.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {"nightly": {}, "review": {}}
    config_file = config_file or environ.get("MRCNN_DEPLOYMENTS_CONFIG")
    if config_file:
        values.update(_read_config(config_file))
    values.update({key: environ[name] for key, name in ENVIRONMENT.items() if environ.get(name)})
    values["nightly"] = {
        **values["nightly"],
        **{key: environ[name] for key, name in PARAMETER_ENVIRONMENT.items() if environ.get(name)},
    }
    values["review"] = {
        **values["review"],
        **{key: environ[name] for key, name in REVIEW_ENVIRONMENT.items() if environ.get(name)},
    }
    if "output_uri" in values["nightly"]:  # review what the nightly job writes
        values["review"].setdefault("output", values["nightly"]["output_uri"])
    settings = ServeSettings(**values)
    _check(settings)
    return settings


def _read_config(path: str) -> dict[str, Any]:
    from tasks import storage

    try:
        loaded = yaml.safe_load(storage.read_bytes(path)) or {}
    except FileNotFoundError:
        raise MissingInput(f"deployments config {path!r} not found") from None
    except yaml.YAMLError as error:
        raise InvalidInput(f"deployments config {path!r} is not valid YAML/JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise InvalidSetting(
            f"deployments config {path!r} must be a mapping with keys {SETTINGS_KEYS}"
        )
    unknown = sorted(set(loaded) - set(SETTINGS_KEYS))
    if unknown:
        raise InvalidSetting(
            f"deployments config {path!r}: unknown keys {unknown}; expected some of {SETTINGS_KEYS}"
        )
    for key in ("nightly", "review"):
        if not isinstance(loaded.get(key, {}), dict):
            raise InvalidSetting(
                f"deployments config {path!r}: {key!r} must map parameter names to values"
            )
    return loaded


def _check(settings: ServeSettings) -> None:
    try:
        zoneinfo.ZoneInfo(settings.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSetting(
            f"unknown timezone {settings.timezone!r}; use an IANA name such as 'Europe/Berlin'"
        ) from None
    from flows.batch_inference import batch_inference
    from flows.select_for_review import select_for_review

    for key, flow in (("nightly", batch_inference), ("review", select_for_review)):
        accepted = set(inspect.signature(flow.fn).parameters)
        unknown = sorted(set(getattr(settings, key)) - accepted)
        if unknown:
            raise InvalidSetting(
                f"{key} parameters {unknown} are not parameters of {flow.name} "
                f"(known: {sorted(accepted)})"
            )


def build_deployments(settings: ServeSettings) -> list[Any]:
    """The ``RunnerDeployment`` objects to serve."""
    from prefect.schedules import Cron

    from flows.batch_inference import batch_inference
    from flows.convert_masks import convert_masks
    from flows.select_for_review import select_for_review

    deployments = [
        batch_inference.to_deployment(
            name="nightly",
            schedules=[Cron(settings.cron, timezone=settings.timezone)],
            parameters={"report": True, **settings.nightly},
            concurrency_limit=1,
            description="New images of the night -> per-class area ratios in Parquet, and "
            "the nightly report.",
        ),
        select_for_review.to_deployment(
            name="weekly",
            schedules=[Cron(settings.review_cron, timezone=settings.timezone)],
            parameters=settings.review,
            concurrency_limit=1,
            description="The past week's images worth correcting -> a labelme review folder.",
        ),
        convert_masks.to_deployment(
            name="on-demand", description="Annotations -> the canonical COCO dataset."
        ),
    ]
    training = _training_pipeline()
    if training is not None:
        deployments.append(
            training.to_deployment(
                name="on-demand", description="convert -> train -> evaluate -> register."
            )
        )
    return deployments


def _training_pipeline() -> Any | None:
    """The ``training-pipeline`` flow, if this checkout has it."""
    from prefect import Flow

    try:
        module = importlib.import_module("flows.training_pipeline")
    except ModuleNotFoundError as error:
        if error.name != "flows.training_pipeline":
            raise
        return None
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, Flow) and value.name == "training-pipeline"
    ]
    return found[0] if found else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m deployments.serve`` (also ``mrcnn-pipeline serve``)."""
    parser.add_argument(
        "--config", metavar="FILE", help="YAML/JSON settings (default: $MRCNN_DEPLOYMENTS_CONFIG)"
    )
    parser.add_argument("--timezone", metavar="TZ", help="timezone of the nightly schedule")
    parser.add_argument("--cron", help=f"nightly schedule (default {NIGHTLY_CRON!r})")


def serve_from_arguments(args: argparse.Namespace) -> int:
    """Load the settings, then serve until SIGTERM/SIGINT; returns the exit code."""
    from prefect import serve

    settings = load_settings(args.config)
    overrides = {
        key: value for key, value in (("timezone", args.timezone), ("cron", args.cron)) if value
    }
    settings = dataclasses.replace(settings, **overrides)
    _check(settings)
    missing = [name for name in ("input_uri", "output_uri") if name not in settings.nightly]
    if missing:
        print(
            f"note: batch-inference/nightly has no default for {missing}; scheduled runs need "
            f"them (set {', '.join(PARAMETER_ENVIRONMENT[m] for m in missing)} or --config)",
            file=sys.stderr,
        )
    serve(*build_deployments(settings), pause_on_shutdown=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m deployments.serve``."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.serve", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    return serve_from_arguments(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
