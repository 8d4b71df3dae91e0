"""Flow ``convert-masks``: annotations in any registered format (``tasks.annotations.registry``)
-> canonical dataset.

list sources -> convert each (in parallel) -> merge -> copy images -> write annotations and
report. Re-running on the same input writes the same bytes. Storage credentials come from
the environment (see ``tasks.storage``), never from parameters, which Prefect records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFutureList

from tasks import storage
from tasks.annotations import canonical
from tasks.annotations.labels import LabelMap
from tasks.annotations.registry import get_format
from tasks.convert import (
    STAGING_FOLDER,
    Format,
    convert_source,
    copy_images,
    list_sources,
    read_labels,
    remove_tree,
    write_annotations,
)
from tasks.datasets import lineage
from tasks.datasets.io import hash_images, write_description
from tasks.failures import InvalidInput, InvalidSetting

COPY_BATCH = 64  # images per copy task: few enough tasks, retries stay cheap


class StrictModeError(InvalidInput):
    """A strict run met a file, shape or region that did not convert as-is."""


@dataclasses.dataclass(frozen=True)
class ItemCounts:
    """Source items (files, or folders for folder formats): found, converted, skipped."""

    found: int
    converted: int
    skipped: int


@dataclasses.dataclass(frozen=True)
class SplitCounts:
    """Images per split."""

    train: int
    val: int


@dataclasses.dataclass(frozen=True)
class ConversionSummary:
    """What a ``convert-masks`` run wrote: the flow's return value.

    ``as_dict`` gives its JSON form (``mrcnn-pipeline convert --json`` prints it).

    Attributes:
        destination: the canonical dataset's folder.
        train, val: the URIs of ``annotations/train.json`` and ``annotations/val.json``.
        report: the URI of ``report.json`` (every issue, per file).
        dataset: the URI of ``dataset.json`` (counts and content hash).
        labels: the classes, in class-id order.
        items: the source items found, converted and skipped.
        images: the images per split.
        issues: how many issues (skipped files, dropped or clipped shapes) the report lists.
    """

    destination: str
    train: str
    val: str
    report: str
    dataset: str
    labels: tuple[str, ...]
    items: ItemCounts
    images: SplitCounts
    issues: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (``--json``)."""
        return dataclasses.asdict(self)


@flow(name="convert-masks", flow_run_name="convert-masks-{format}")
def convert_masks(
    source: str,
    destination: str,
    format: Format = "labelme",
    labels: str | list[str] | None = None,
    aliases: dict[str, str] | None = None,
    alias_prefix: bool = False,
    val_fraction: float = 0.2,
    strict: bool = False,
    options: dict[str, str] | None = None,
) -> ConversionSummary:
    """Convert annotations below ``source`` into the canonical dataset at ``destination``.

    Args:
        source: input folder (or single file) URI: a local path or ``s3://bucket/prefix``.
            For ``yolo`` the dataset root, where ``data.yaml`` lies.
        destination: output folder URI; must not lie inside ``source``.
        format: a registered format name (``tasks.annotations.registry.NAMES``), e.g.
            ``labelme``, ``coco``, ``yolo``; see docs/reference/annotation-formats.md.
        labels: labels file URI, or the class names; None takes the classes found.
        aliases: annotated label -> class, e.g. ``{"car1": "car"}``.
        alias_prefix: map other labels by prefix (``car12`` -> ``car``).
        val_fraction: expected share of images in ``val`` (0 puts all in ``train``).
        strict: fail on the first issue (skipped file, dropped or clipped shape) instead of
            reporting it; nothing is written then.
        options: the format's own options by name, e.g. ``{"attribute": "kind"}`` for VIA
            (each format's ``FORMAT.options``); the others take their defaults.

    Returns:
        The `ConversionSummary`: the URIs written (``dataset`` is ``dataset.json``: counts and
        content hash, see ``merge-datasets``) and the counts.
    """
    logger = get_run_logger()
    _check_arguments(source, destination, val_fraction, format, options)
    names = read_labels(labels) if isinstance(labels, str) else labels
    label_map = LabelMap(tuple(names) if names is not None else None, aliases or {}, alias_prefix)
    root, files = list_sources(source, format)
    existed = storage.exists(destination)
    storage.probe_writable(destination, keep_folders=False)  # last check, before any work
    staging = storage.join(destination, STAGING_FOLDER)
    progress = create_progress_artifact(
        0.0, key="convert-masks-progress", description=f"converting {len(files)} {format} files"
    )
    futures = convert_source.map(
        unmapped(root),
        files,
        unmapped(format),
        unmapped(label_map),
        unmapped(staging),
        unmapped(options),
    )
    summaries = _gather(futures, progress)
    dataset = canonical.build_dataset(summaries, label_map, val_fraction, format, source)
    if strict and dataset.problems:
        remove_tree(staging if existed else destination)  # only staging is in a new folder
        raise StrictModeError(dataset.problems[0])
    batches = [
        dataset.copies[i : i + COPY_BATCH] for i in range(0, len(dataset.copies), COPY_BATCH)
    ]
    copy_images.map(batches, unmapped(destination)).result()
    written = write_annotations(dataset, destination)
    written["dataset"] = _describe(dataset, destination)  # last: it vouches for the rest
    remove_tree(staging)
    update_progress_artifact(progress, 100.0)
    report = dataset.report
    _summary_artifact(report)
    logger.info(
        "converted %d of %d items (%d skipped) into %s",
        report["items"]["converted"],
        report["items"]["found"],
        report["items"]["skipped"],
        destination,
    )
    return ConversionSummary(
        destination=destination,
        train=written["train"],
        val=written["val"],
        report=written["report"],
        dataset=written["dataset"],
        labels=tuple(report["labels"]),
        items=ItemCounts(**report["items"]),
        images=SplitCounts(**report["images"]),
        issues=len(dataset.problems),
    )


def _describe(dataset: canonical.CanonicalDataset, destination: str) -> str:
    """``dataset.json`` (``tasks.datasets.lineage``): no parents, counts, content hash."""
    names = sorted(name for _, name in dataset.copies)
    batches = [names[i : i + COPY_BATCH] for i in range(0, len(names), COPY_BATCH)]
    hashes: dict[str, str] = {}
    for future in hash_images.map(unmapped(destination), batches):
        hashes.update(future.result())
    return write_description(destination, lineage.describe_dataset(dataset.documents, hashes))


def _gather(futures: PrefectFutureList, progress: UUID) -> list[dict[str, Any]]:
    """Results in input order; the progress artifact moves in tenths up to 90 %."""
    results = []
    for done, future in enumerate(futures, start=1):
        results.append(future.result())
        if done == len(futures) or done % max(1, len(futures) // 10) == 0:
            update_progress_artifact(progress, 90.0 * done / len(futures))
    return results


def _check_arguments(
    source: str, destination: str, val_fraction: float, fmt: str, options: Mapping[str, str] | None
) -> None:
    get_format(fmt).resolve_options(options)  # an option the format does not take
    if not 0.0 <= val_fraction <= 1.0:
        raise InvalidSetting(f"val_fraction must be in [0, 1], got {val_fraction}")
    if storage.is_inside(destination, source):
        raise InvalidSetting(
            f"destination {destination!r} must not be inside the input {source!r} "
            "(a re-run would read its own output)"
        )


def _summary_artifact(report: dict[str, Any]) -> None:
    rows = [
        {
            "class": name,
            "id": index,
            "train": report["instances"]["train"][name],
            "val": report["instances"]["val"][name],
        }
        for index, name in enumerate(report["labels"], start=1)
    ]
    items = report["items"]
    create_table_artifact(
        rows,
        key="convert-masks-summary",
        description=(
            f"{items['converted']} of {items['found']} items converted, "
            f"{items['skipped']} skipped; "
            f"images train {report['images']['train']}, val {report['images']['val']}; "
            f"{len(report['dropped'])} shapes dropped, {len(report['clipped'])} clipped"
        ),
    )
