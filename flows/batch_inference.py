"""Flow ``batch-inference``: a folder of images -> per-class area ratios in Parquet.

resolve the model -> list images -> probe the output -> commit leftovers -> skip what this model
version already did -> shards (``process_shard`` mapped onto the task runner, each staging
its rows) -> commit -> summary. Outputs under ``output_uri`` (hive-partitioned by
``run_date``): ``area_ratios/``, ``instances/``, ``errors/``, ``images/``, ``overlays/``; the
schemas are in ``tasks.parquet_schemas``. Re-running a date with nothing new writes nothing;
re-processing replaces rows instead of adding them; a crash anywhere is finished or rolled
back by the next run's first commit (``tasks.tables``).
Storage credentials come from the environment (``tasks.storage``), never from parameters,
which Prefect records.

Shards run on the flow's own thread pool, or on a Dask cluster when ``dask_address`` is given
(``tasks.inference.task_runners``): ``tcp://host:8786`` for an existing scheduler, ``local:N`` for N
worker processes on this machine. The flow process reads the model's metadata only
(``tasks.models.resolve``); a worker process builds the model on its first shard and
reuses it. ``shard_size`` bounds the task count: ceil(images / shard_size) shard tasks
(10,000 images at the default 64 make 157 tasks).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed

from flows.nightly_report import nightly_report
from mrcnn.config import Backbone
from tasks import storage, tables
from tasks.failures import InvalidSetting, RunIncomplete
from tasks.inference.image_decoding import MAX_PIXELS
from tasks.inference.image_metadata import compile_path_pattern
from tasks.inference.shards import (
    ClassTotals,
    ShardContext,
    ShardResult,
    list_images,
    plan_shards,
    process_shard,
)
from tasks.inference.task_runners import dask_task_runner, shard_task_runner
from tasks.io_task import io_task
from tasks.models import ModelArtifact, check_runtime, get_runtime, resolve

DEFAULT_REGISTRY = "registry"
ProgressListener = Callable[[int, int], None]
_listeners: list[ProgressListener] = []


@dataclasses.dataclass(frozen=True)
class InferenceSummary:
    """What a ``batch-inference`` run did: the flow's return value.

    ``as_dict`` gives its JSON form (``mrcnn-pipeline infer --json`` prints it).

    Attributes:
        run_date: the partition written, ``YYYY-MM-DD``.
        model_name, model_version: the model that ran (``tiny``, ``"3"`` or ``sha256-…``).
        output_uri: where the tables are.
        listed: images found below the input.
        skipped: images this model version had done already.
        processed: images detected and measured.
        errors: images recorded in the ``errors`` table instead.
        error_types: errors by type (``truncated``, ``too_large``, ...).
        shards: shards that finished.
        overlays: overlay images written.
        precision: what the shards computed in (``float32``, ``bfloat16``), sorted.
        classes: per class, its totals over the processed images.
        report: the nightly report page's URI, when the run ended with the report.
    """

    run_date: str
    model_name: str
    model_version: str
    output_uri: str
    listed: int
    skipped: int
    processed: int
    errors: int
    error_types: dict[str, int]
    shards: int
    overlays: int
    precision: tuple[str, ...]
    classes: dict[str, ClassTotals]
    report: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (``--json``)."""
        return dataclasses.asdict(self)


@contextlib.contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Call ``listener(images_done, images_to_do)`` as shards finish (e.g. a CLI progress bar)."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


@io_task(name="resolve-model")
def resolve_model(
    model: str | None,
    registry_uri: str,
    weights: str | None,
    config: str | None,
    classes: str | None,
    runtime: str,
    precision: str | None = None,
    backbones: list[Backbone] | None = None,
) -> ModelArtifact:
    """Pin the model once for the whole run (metadata only: the workers build it)."""
    artifact = resolve(
        model,
        registry_uri,
        weights=weights,
        config=config,
        classes=classes,
        backbones=backbones or (),
    )
    check_runtime(artifact, runtime, precision)
    return artifact


@io_task(name="check-output")
def check_output(output_uri: str) -> None:
    """Write and delete a probe object: an unusable output fails before the model loads."""
    storage.probe_writable(output_uri)


@io_task(name="commit-results")
def commit_results(output_uri: str) -> dict[str, int]:
    """Take staged shards into the tables under the commit lease (see ``tasks.tables``)."""
    return tables.commit(output_uri).as_dict()


def done_images(output_uri: str, model_key: str) -> set[tuple[str, str]]:
    """``(uri, fingerprint)`` of images ``model_key`` finished: committed or staged."""
    done = tables.done_images(tables.read_current(output_uri), model_key)
    done.update(
        (entry.image_uri, entry.fingerprint)
        for entry in tables.pending_entries(output_uri)
        if entry.model == model_key and entry.outcome != "retry"
    )
    return done


@flow(name="batch-inference")
def batch_inference(
    input_uri: str,
    output_uri: str,
    model: str | None = None,
    weights: str | None = None,
    config: str | None = None,
    classes: str | None = None,
    registry: str = DEFAULT_REGISTRY,
    run_date: datetime.date | None = None,
    timezone: str | None = None,
    min_confidence: float | None = None,
    batch_size: int = 4,
    shard_size: int = 64,
    overlays: bool = True,
    reprocess: bool = False,
    patterns: list[str] | None = None,
    path_pattern: str | None = None,
    max_pixels: int = MAX_PIXELS,
    dask_address: str | None = None,
    runtime: str = "tensorflow",
    precision: str | None = None,
    isolate_shards: bool | None = None,
    report: bool = False,
    report_path_field: str | None = None,
    backbones: list[Backbone] | None = None,
) -> InferenceSummary:
    """Detect instances in every new image below ``input_uri`` and store per-class areas.

    Args:
        input_uri: image folder, local or ``s3://bucket/prefix/``; searched recursively for
            jpg/jpeg/png/bmp/tif/tiff/webp (any case).
        output_uri: where the tables and overlays go; must not lie inside ``input_uri``.
        model: registry reference ``NAME@production``, ``NAME@vN`` or ``NAME``; or a training
            run folder, a checkpoint, or an export folder (``mrcnn-pipeline export-model``).
        weights, config: instead of ``model``, a weights file and its ``config.json``.
        classes: class names file for ``weights`` (JSON list or one per line); default
            ``classes.json`` beside ``config``, else ``class_<id>``.
        registry: the model registry root (URI), for ``model``.
        run_date: the partition to write; default the flow run's scheduled start date in
            ``timezone``, so retries and late runs write the same partition.
        timezone: IANA name for ``run_date``; default the deployment schedule's, else UTC.
        min_confidence: keep instances scoring at least this; default the model config's
            DETECTION_MIN_CONFIDENCE.
        batch_size: images per ``detect()`` call.
        shard_size: images per task (ceil(images / shard_size) tasks); the model is loaded
            once per worker process, not per task.
        overlays: write the annotated JPEG of each image.
        reprocess: process images this model version already did.
        patterns: only paths below ``input_uri`` matching one of these shell patterns.
        path_pattern: a regular expression with named groups, searched in each image's path
            below ``input_uri`` (e.g. ``(?P<site>[^/]+)/(?P<camera>cam\\d+)/``); its groups go
            to ``images.path_fields`` beside hive-style ``key=value`` folders, and win over
            a folder of the same name.
        max_pixels: larger images are recorded as ``too_large`` errors.
        dask_address: run the shards on Dask: a scheduler address (``tcp://host:8786``) or
            ``local:N`` (N worker processes here); default the flow's thread pool.
        runtime: a runtime of ``tasks.models.RUNTIMES``: ``tensorflow`` (Keras weights,
            SavedModel exports), ``onnxruntime`` (ONNX exports) or ``openvino`` (OpenVINO IR
            exports); the tables are the same.
        precision: ``float32``, ``bfloat16`` or ``auto`` for Keras weights and OpenVINO
            exports (default: the model's INFERENCE_PRECISION); bfloat16 runs only on CPUs
            with AVX512_BF16 or AMX (elsewhere float32 runs; ``auto`` picks bfloat16 there).
            ``int8`` runs an INT8 OpenVINO export whose check passed (and such an export runs
            with nothing else). The summary's ``precision`` lists what the shards computed in.
        isolate_shards: run each shard in a child process, so that a runtime crashing (a
            segmentation fault) costs that shard (retried once, then failed; its images are
            retried by the next run), not the run. Default: the runtime's
            ``isolate_shards`` (on for ``openvino``).
        report: end with the ``nightly-report`` subflow for the run_date (the nightly
            deployment does), also when some shards failed; it shows the model's registered
            evaluation from ``registry``.
        report_path_field: the report's breakdown by this field of ``images.path_fields``.
        backbones: callable backbones (functions, not names) allowed for a model whose
            config names one (``mrcnn.Config.from_dict``); a config naming other code is
            refused. The workers must be able to import them.

    Returns:
        The run's `InferenceSummary`: counts, the model, run_date, the output URI and, with
        ``report``, the report page's URI.
    """
    _check_arguments(
        input_uri,
        output_uri,
        min_confidence,
        shard_size,
        max_pixels,
        dask_address,
        runtime,
        batch_size,
        path_pattern,
    )
    logger = get_run_logger()
    day = (run_date or _scheduled_date(timezone)).isoformat()
    # Everything the user gave is checked before the output is touched, so that bad input
    # leaves no output folder behind; the probe then fails before any model loads.
    resolved = resolve_model(
        model, registry, weights, config, classes, runtime, precision, backbones
    )
    images = list_images(input_uri, patterns)
    check_output(output_uri)
    commit_results(output_uri)
    _warn_threshold(resolved, min_confidence, logger)
    shards = plan_shards(images, done_images(output_uri, resolved.identity), reprocess, shard_size)
    todo = sum(len(shard) for shard in shards)
    logger.info(
        "%d images listed, %d to process in %d shards with %s, run_date %s",
        len(images),
        todo,
        len(shards),
        resolved.identity,
        day,
    )
    context = ShardContext(
        output_uri,
        day,
        _run_id(),
        min_confidence,
        overlays,
        max_pixels,
        runtime,
        batch_size,
        precision,
        get_runtime(runtime).isolate_shards if isolate_shards is None else isolate_shards,
        path_pattern=path_pattern,
    )
    results, failures = _run_shards(shards, resolved, context, todo, dask_address)
    committed = commit_results(output_uri)
    summary = _summary(results, len(images), todo, resolved, day, output_uri)
    _summary_artifact(summary, resolved)
    logger.info(
        "processed %d images, %d errors, %d skipped; %d rows superseded",
        summary.processed,
        summary.errors,
        summary.skipped,
        committed["rows_removed"],
    )
    if report:
        page = nightly_report(
            output=output_uri,
            date=datetime.date.fromisoformat(day),
            path_field=report_path_field,
            registry=resolved.registry_uri or registry,
        ).report
        summary = dataclasses.replace(summary, report=page)
    if failures:
        raise RunIncomplete(
            f"{len(failures)} of {len(shards)} shards failed (their images are "
            f"retried by the next run): {failures[0]}"
        )
    return summary


def _check_arguments(
    input_uri: str,
    output_uri: str,
    min_confidence: float | None,
    shard_size: int,
    max_pixels: int,
    dask_address: str | None,
    runtime: str,
    batch_size: int,
    path_pattern: str | None = None,
) -> None:
    if storage.is_inside(output_uri, input_uri):
        raise InvalidSetting(
            f"output_uri {output_uri!r} must not be inside input_uri "
            f"{input_uri!r} (the overlays would be listed as new images)"
        )
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise InvalidSetting(f"min_confidence must be in [0, 1], got {min_confidence}")
    if shard_size < 1 or max_pixels < 1 or batch_size < 1:
        raise InvalidSetting(
            "shard_size, max_pixels and batch_size must be >= 1, got "
            f"{shard_size}, {max_pixels}, {batch_size}"
        )
    get_runtime(runtime)  # an unknown runtime fails here, naming the registered ones
    if dask_address is not None:
        dask_task_runner(dask_address)  # a malformed address fails here, before any work
    compile_path_pattern(path_pattern)  # a bad regex too, not in every shard


def _scheduled_date(timezone: str | None) -> datetime.date:
    """The run's scheduled start (stable across retries) as a date in the schedule's zone."""
    from prefect.runtime import flow_run

    name = timezone or _deployment_timezone() or "UTC"
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSetting(
            f"unknown timezone {name!r}; use an IANA name such as 'Europe/Berlin'"
        ) from None
    return flow_run.scheduled_start_time.astimezone(zone).date()


def _deployment_timezone() -> str | None:
    """The timezone of the first schedule of the deployment this run belongs to, if any."""
    from prefect import get_client
    from prefect.runtime import deployment

    if not deployment.id:
        return None
    with get_client(sync_client=True) as client:
        found = client.read_deployment(uuid.UUID(str(deployment.id)))
    zones = [getattr(s.schedule, "timezone", None) for s in found.schedules or []]
    return next((zone for zone in zones if zone), None)


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())


def _warn_threshold(resolved: ModelArtifact, min_confidence: float | None, logger: Any) -> None:
    if (
        resolved.format != "keras"
        and min_confidence is not None
        and min_confidence < resolved.min_confidence
    ):
        logger.warning(
            "min_confidence %.3f is below DETECTION_MIN_CONFIDENCE %.3f, which the "
            "exported graph of %s applies first",
            min_confidence,
            resolved.min_confidence,
            resolved.origin,
        )


def _run_shards(
    shards: list[list[Any]],
    artifact: ModelArtifact,
    context: ShardContext,
    todo: int,
    dask_address: str | None,
) -> tuple[list[ShardResult], list[str]]:
    """Submit every shard; report progress as they finish; collect results and failures."""
    progress = create_progress_artifact(
        0.0, key="batch-inference-progress", description=f"{todo} images in {len(shards)} shards"
    )
    results, failures, done = [], [], 0
    # A run with nothing new starts no cluster.
    with shard_task_runner(dask_address if shards else None) as runner:
        futures = runner.map(
            process_shard,
            {"images": shards, "model": unmapped(artifact), "context": unmapped(context)},
        )
        for future in as_completed(futures):
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, BaseException):
                failures.append(str(outcome) or type(outcome).__name__)
                continue
            results.append(outcome)
            done += outcome.images
            update_progress_artifact(progress, 100.0 * done / max(todo, 1))
            for listener in list(_listeners):
                listener(done, todo)
    update_progress_artifact(progress, 100.0)
    return results, failures


def _summary(
    results: list[ShardResult],
    listed: int,
    todo: int,
    resolved: ModelArtifact,
    day: str,
    output_uri: str,
) -> InferenceSummary:
    """The run's summary from its shards' results."""
    classes = {name: ClassTotals() for name in resolved.class_names}
    error_types: collections.Counter[str] = collections.Counter()
    for result in results:
        for name, totals in result.classes.items():
            classes[name].merge(totals)
        error_types.update(result.error_types)
    return InferenceSummary(
        run_date=day,
        model_name=resolved.name,
        model_version=resolved.version,
        output_uri=output_uri,
        listed=listed,
        skipped=listed - todo,
        processed=sum(r.processed for r in results),
        errors=sum(r.errors for r in results),
        error_types=dict(error_types),
        shards=len(results),
        overlays=sum(r.overlays for r in results),
        precision=tuple(sorted({r.precision for r in results})),
        classes=classes,
    )


def _summary_artifact(summary: InferenceSummary, resolved: ModelArtifact) -> None:
    processed = max(summary.processed, 1)
    rows = [
        {
            "class": name,
            "images with class": totals.images,
            "instances": totals.instances,
            "mean area %": round(100.0 * totals.area_ratio_sum / processed, 3),
            "max area %": round(100.0 * totals.area_ratio_max, 3),
        }
        for name, totals in summary.classes.items()
    ]
    errors = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.error_types.items()))
    create_table_artifact(
        rows,
        key="batch-inference-summary",
        description=(
            f"run_date {summary.run_date}, model {resolved.identity} "
            f"({'/'.join(summary.precision) or 'no shard ran'}): {summary.processed} images "
            f"processed, {summary.skipped} skipped (already done), {summary.errors} errors"
            f"{' (' + errors + ')' if errors else ''}; output {summary.output_uri}"
        ),
    )
