"""Batch inference steps: list images, plan shards, run one shard into the output tables.

A shard task builds the model once per worker process (``tasks.models.build``), reads and
decodes images on a small thread pool while the model runs (TensorFlow releases the GIL),
detects in batches, writes overlay JPEGs in the background, then stages its rows and index
entries (``tasks.tables.staging``) for the next commit to take into the tables. It returns
URIs and counts only; arrays never leave the task.

Every image of a shard ends as ``area_ratios`` rows or one ``errors`` row:
bad files get the decoder's ``error_type`` (final: skipped until the file changes);
``read_error`` and ``inference_error`` are transient and retried by the next run. Every
decoded image also gets one ``images`` row (size, bytes, EXIF, path fields), built in the I/O
thread from the bytes read for decoding (``tasks.inference.image_metadata``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import fnmatch
import hashlib
import posixpath
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from mrcnn.intensity import Normalization
from tasks import storage
from tasks.failures import InvalidSetting, MissingInput
from tasks.faults import crash_point
from tasks.inference.area_ratios import area_rows, instance_rows, legend_lines, select_detections
from tasks.inference.image_decoding import MAX_PIXELS, ImageDecodeError, decode_image
from tasks.inference.image_metadata import image_row
from tasks.io_task import io_task
from tasks.models import LoadedModel, ModelArtifact, build
from tasks.parquet_schemas import (
    PARTITION_KEY,
    AreaRatioRow,
    ErrorRow,
    ImageRow,
    InstanceRow,
    RunStamp,
    rows_to_table,
)
from tasks.tables import Entry, staging

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TRANSIENT_ERRORS = ("read_error", "inference_error")
IO_THREADS = 4  # reads, decodes and overlay writes in flight per shard


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """A listed image: URI, path below the input folder, and what identifies its content."""

    uri: str
    relative: str
    fingerprint: str  # ETag + size on object stores, size + mtime on disk
    overlay: str = ""  # the overlay's path below overlays/run_date=D/ (see overlay_names)


@dataclasses.dataclass(frozen=True)
class ShardContext:
    """What every shard of one run shares (plain values: it travels to workers)."""

    output_uri: str
    run_date: str  # YYYY-MM-DD, the partition
    run_id: str
    min_confidence: float | None = None  # None: the model's DETECTION_MIN_CONFIDENCE
    overlays: bool = True
    max_pixels: int = MAX_PIXELS
    runtime: str = "tensorflow"  # see tasks.models.RUNTIMES
    batch_size: int = 4  # images per detect() call
    precision: str | None = None  # None: the model's INFERENCE_PRECISION; "auto" (mrcnn.precision)
    isolate: bool = False  # run each shard in a child process (tasks.inference.shard_process)
    path_pattern: str | None = None  # named groups become images.path_fields (checked by the flow)


class Decoded(NamedTuple):
    """A decoded image and its ``images`` row, made while its bytes were at hand."""

    pixels: np.ndarray
    image_row: ImageRow


@dataclasses.dataclass
class ShardRows:
    """The rows of one shard, per table, until they are staged."""

    area_ratios: list[AreaRatioRow] = dataclasses.field(default_factory=list)
    instances: list[InstanceRow] = dataclasses.field(default_factory=list)
    errors: list[ErrorRow] = dataclasses.field(default_factory=list)
    images: list[ImageRow] = dataclasses.field(default_factory=list)

    def tables(self) -> dict[str, pa.Table]:
        """Each table's rows as a pyarrow table of its schema."""
        return {
            AreaRatioRow.TABLE: rows_to_table(AreaRatioRow, self.area_ratios),
            InstanceRow.TABLE: rows_to_table(InstanceRow, self.instances),
            ErrorRow.TABLE: rows_to_table(ErrorRow, self.errors),
            ImageRow.TABLE: rows_to_table(ImageRow, self.images),
        }


@dataclasses.dataclass
class ClassTotals:
    """One class's totals over some images (a shard's, then the run's)."""

    images: int = 0  # images where the class has at least one instance
    instances: int = 0
    area_ratio_sum: float = 0.0
    area_ratio_max: float = 0.0

    def add_row(self, row: AreaRatioRow) -> None:
        """Count one ``area_ratios`` row."""
        self.images += row.instance_count > 0
        self.instances += row.instance_count
        self.area_ratio_sum += row.area_ratio
        self.area_ratio_max = max(self.area_ratio_max, row.area_ratio)

    def merge(self, other: ClassTotals) -> None:
        self.images += other.images
        self.instances += other.instances
        self.area_ratio_sum += other.area_ratio_sum
        self.area_ratio_max = max(self.area_ratio_max, other.area_ratio_max)


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """What a shard hands back to the flow: counts and where its rows are staged.

    Attributes:
        shard: the shard key (its staging folder's name).
        images: images in the shard; processed: with ``area_ratios`` rows; errors: with an
            ``errors`` row, by type in ``error_types``.
        staged: the staging folder URI the next commit takes.
        overlays: overlay pictures written.
        classes: per-class totals over the processed images.
        precision: what the model computed in (float32 or bfloat16) on this shard's machine.
    """

    shard: str
    images: int
    processed: int
    errors: int
    error_types: dict[str, int]
    staged: str
    overlays: int
    classes: dict[str, ClassTotals]
    precision: str = "float32"


def find_images(input_uri: str, patterns: Sequence[str] = ()) -> list[ImageRef]:
    """Image files below ``input_uri`` (recursive), sorted by URI.

    Args:
        input_uri: a folder: local path or ``s3://bucket/prefix/``.
        patterns: optional shell-style patterns matched against the path below
            ``input_uri`` (``*`` also crosses ``/``); an image must match one of them.

    Returns:
        Files whose extension is one of ``IMAGE_EXTENSIONS`` (any case).

    Raises:
        FileNotFoundError: ``input_uri`` does not exist.
    """
    if not storage.exists(input_uri):
        raise MissingInput(f"input folder {input_uri!r} not found")
    fs = storage.filesystem_for(input_uri)
    root = fs._strip_protocol(str(input_uri)).rstrip("/")
    local = storage.is_local(input_uri)
    found = []
    for path, info in fs.find(root, withdirs=False, detail=True).items():
        relative = path[len(root) + 1 :]
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            continue
        if patterns and not any(fnmatch.fnmatchcase(relative, p) for p in patterns):
            continue
        uri = path if local else fs.unstrip_protocol(path)
        found.append(ImageRef(uri, relative, fingerprint(info)))
    overlays = overlay_names([ref.relative for ref in found])
    return sorted(
        (dataclasses.replace(ref, overlay=overlays[ref.relative]) for ref in found),
        key=lambda ref: ref.uri,
    )


def overlay_names(relatives: Sequence[str]) -> dict[str, str]:
    """Each image's overlay path: its relative path with the extension replaced by ``.jpg``.

    ``incoming_0000.jpg`` stays ``incoming_0000.jpg``, ``a/b.png`` becomes ``a/b.jpg``. Where
    two images of one listing would share a name (``x.png`` beside ``x.jpg``), those not
    already named so keep their extension in front: ``x.png.jpg``.
    """
    plain = {relative: posixpath.splitext(relative)[0] + ".jpg" for relative in relatives}
    taken = collections.Counter(plain.values())
    return {
        relative: name if taken[name] == 1 or relative == name else relative + ".jpg"
        for relative, name in plain.items()
    }


def fingerprint(info: dict[str, Any]) -> str:
    """A file's content identity from its listing: ETag and size, else size and mtime."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag={str(etag).strip(chr(34))};size={info.get('size')}"
    return f"size={info.get('size')};mtime={info.get('mtime') or info.get('LastModified')}"


def plan_shards(
    images: Sequence[ImageRef], done: set[tuple[str, str]], reprocess: bool, shard_size: int
) -> list[list[ImageRef]]:
    """The images still to process, in shards of ``shard_size`` (in listing order).

    Args:
        images: the listing.
        done: ``(uri, fingerprint)`` pairs the run's model finished earlier.
        reprocess: process everything again.
        shard_size: images per shard.
    """
    if shard_size < 1:
        raise InvalidSetting(f"shard_size must be >= 1, got {shard_size}")
    todo = [ref for ref in images if reprocess or (ref.uri, ref.fingerprint) not in done]
    return [todo[start : start + shard_size] for start in range(0, len(todo), shard_size)]


def shard_key(images: Sequence[ImageRef]) -> str:
    """A shard's staging name: a hash of its images and their fingerprints.

    The same images (unchanged) give the same key, so a retried shard rewrites its own
    staging folder instead of adding another.
    """
    digest = hashlib.sha256()
    for ref in images:
        digest.update(f"{ref.uri}\t{ref.fingerprint}\n".encode())
    return digest.hexdigest()[:20]


@io_task(name="list-images")
def list_images(input_uri: str, patterns: list[str] | None = None) -> list[ImageRef]:
    """Prefect task around :func:`find_images` (retried: listing is I/O)."""
    return find_images(input_uri, patterns or ())


@io_task(name="process-shard", task_run_name="process-shard-{context.run_date}")
def process_shard(
    images: list[ImageRef], model: ModelArtifact, context: ShardContext
) -> ShardResult:
    """Detect, measure and store one shard; see :func:`run_shard` (and `context.isolate`)."""
    if context.isolate:
        from tasks.inference.shard_process import run_isolated

        return run_isolated(images, model, context)
    return run_shard(images, model, context)


def run_shard(
    images: Sequence[ImageRef], model: ModelArtifact, context: ShardContext
) -> ShardResult:
    """Process a shard of images into a staged shard that the next commit takes."""
    loaded = build(
        model, context.runtime, context.batch_size, context.min_confidence, context.precision
    )
    key = shard_key(images)
    stamp = RunStamp(loaded.name, loaded.version, context.run_id)
    produced = ShardRows()
    entries, overlay_writes = [], []
    # Intensities are mapped as the model was trained (its config's INTENSITY_NORMALIZATION).
    normalization = Normalization.from_config(loaded.config)
    with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="shard-io") as pool:
        for batch in _batches(
            _decoded(images, pool, context, normalization, stamp), context.batch_size
        ):
            decoded = [(ref, item) for ref, item in batch if isinstance(item, Decoded)]
            for ref, _ in decoded:
                crash_point("detect", ref.uri)  # fault-injection tests: a runtime that crashes
            results = _detect(loaded, [item.pixels for _, item in decoded])
            for (ref, (image, facts)), result in zip(decoded, results):
                produced.images.append(facts)  # decoded: a result or an inference_error
                if isinstance(result, Exception):
                    produced.errors.append(_error_row(ref, result, stamp))
                    entries.append(_entry(ref, loaded, context, key, "retry"))
                    continue
                detection, rows = _measure(ref, image, result, loaded, context, stamp, produced)
                if context.overlays:
                    overlay_writes.append(
                        pool.submit(_write_overlay, ref, image, detection, rows, loaded, context)
                    )
                entries.append(_entry(ref, loaded, context, key, "ok"))
            for ref, error in batch:
                if isinstance(error, Exception):
                    produced.errors.append(_error_row(ref, error, stamp))
                    entries.append(_entry(ref, loaded, context, key, _error_outcome(error)))
        overlays = sum(1 for future in overlay_writes if future.result())
    staged = staging.stage(
        context.output_uri, context.run_id, key, produced.tables(), entries
    ).folder
    return _summary(key, images, produced, staged, overlays, loaded)


def _decoded(
    images: Sequence[ImageRef],
    pool: ThreadPoolExecutor,
    context: ShardContext,
    normalization: Normalization,
    stamp: RunStamp,
) -> Iterator[tuple[ImageRef, Decoded | Exception]]:
    """Images in order, read and decoded ahead on ``pool`` (a bounded window of futures)."""
    window: deque[tuple[ImageRef, Future]] = deque()
    pending = iter(images)
    for ref in pending:
        window.append((ref, pool.submit(_read_and_decode, ref, context, normalization, stamp)))
        if len(window) >= 2 * IO_THREADS:
            break
    while window:
        ref, future = window.popleft()
        following = next(pending, None)
        if following is not None:
            window.append(
                (following, pool.submit(_read_and_decode, following, context, normalization, stamp))
            )
        yield ref, future.result()


def _read_and_decode(
    ref: ImageRef, context: ShardContext, normalization: Normalization, stamp: RunStamp
) -> Decoded | Exception:
    """The decoded image and its ``images`` row, or the exception that says why not (kept)."""
    try:
        data = storage.read_bytes(ref.uri)
    except OSError as error:  # vanished since the listing, refused, network
        return error
    try:
        pixels = decode_image(data, ref.uri, context.max_pixels, normalization)
    except ImageDecodeError as error:
        return error
    height, width = pixels.shape[:2]
    # The bytes are read once: the row's EXIF and size come from them here, not from storage.
    return Decoded(
        pixels,
        image_row(
            ref.uri, ref.relative, ref.fingerprint, data, width, height, stamp, context.path_pattern
        ),
    )


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _detect(loaded: LoadedModel, images: list[np.ndarray]) -> list[dict[str, Any] | Exception]:
    """``detect()`` on a batch; if the batch fails, image by image, keeping each failure."""
    if not images:
        return []
    try:
        return list(loaded.detect(images))
    except Exception as error:  # e.g. sizes that cannot share a batch, or one bad image
        if len(images) == 1:
            return [error]
    results: list[dict[str, Any] | Exception] = []
    for image in images:
        try:
            results.extend(loaded.detect([image]))
        except Exception as error:  # recorded as an inference_error row; next run retries
            results.append(error)
    return results


def _measure(
    ref: ImageRef,
    image: np.ndarray,
    result: dict[str, Any],
    loaded: LoadedModel,
    context: ShardContext,
    stamp: RunStamp,
    produced: ShardRows,
) -> tuple[dict[str, np.ndarray], list[AreaRatioRow]]:
    """Append an image's area and instance rows; returns its kept detections and area rows."""
    detection = select_detections(result, context.min_confidence or 0.0)
    height, width = image.shape[:2]
    rows = area_rows(ref.uri, height, width, detection, loaded.class_names, stamp, _now())
    produced.area_ratios += rows
    produced.instances += instance_rows(ref.uri, detection, loaded.class_names, stamp)
    return detection, rows


def _error_type(error: Exception) -> str:
    if isinstance(error, ImageDecodeError):
        return error.error_type
    return "read_error" if isinstance(error, OSError) else "inference_error"


def _error_outcome(error: Exception) -> str:
    return "retry" if _error_type(error) in TRANSIENT_ERRORS else "error"


def _error_row(ref: ImageRef, error: Exception, stamp: RunStamp) -> ErrorRow:
    return ErrorRow(
        image_uri=ref.uri,
        error_type=_error_type(error),
        message=str(error) or type(error).__name__,
        run_id=stamp.run_id,
        failed_at=_now(),
    )


def _entry(
    ref: ImageRef, loaded: LoadedModel, context: ShardContext, key: str, outcome: str
) -> Entry:
    return Entry(ref.uri, context.run_date, ref.fingerprint, loaded.key, key, outcome)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def overlay_uri(output_uri: str, run_date: str, overlay: str) -> str:
    """``<output_uri>/overlays/run_date=<date>/<overlay name>`` (see :func:`overlay_names`)."""
    return storage.join(output_uri, "overlays", f"{PARTITION_KEY}={run_date}", overlay)


def _write_overlay(
    ref: ImageRef,
    image: np.ndarray,
    detection: dict[str, np.ndarray],
    rows: list[AreaRatioRow],
    loaded: LoadedModel,
    context: ShardContext,
) -> bool:
    """The overlay picture of the legacy TF 1.15 repository's inference script: masks, boxes,
    "class score" captions and the per-class area %."""
    from mrcnn.visualize import draw_instances, encode_image

    drawn = draw_instances(
        image,
        detection["rois"],
        detection["masks"],
        detection["class_ids"],
        ("BG", *loaded.class_names),
        detection["scores"],
        text_lines=legend_lines(rows),
    )
    name = ref.overlay or overlay_names([ref.relative])[ref.relative]
    storage.write_bytes(
        overlay_uri(context.output_uri, context.run_date, name), encode_image(drawn, "JPEG")
    )
    return True


def _summary(
    key: str,
    images: Sequence[ImageRef],
    produced: ShardRows,
    staged: str,
    overlays: int,
    loaded: LoadedModel,
) -> ShardResult:
    classes = {name: ClassTotals() for name in loaded.class_names}
    for row in produced.area_ratios:
        classes[row.class_name].add_row(row)
    error_types = dict(collections.Counter(row.error_type for row in produced.errors))
    return ShardResult(
        key,
        len(images),
        len({row.image_uri for row in produced.area_ratios}),
        len(produced.errors),
        error_types,
        staged,
        overlays,
        classes,
        loaded.precision.precision,
    )
