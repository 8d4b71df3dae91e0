"""Flow ``merge-datasets``: a canonical dataset plus reviewed additions -> its next version.

read base and add (in parallel) -> hash every image (batches, in parallel) -> merge (rules in
``tasks.datasets.merge``) -> copy images -> write annotations, ``report.json`` and
``dataset.json`` (lineage: both parents and their content hashes). Re-running on the same
inputs writes the same bytes. Storage credentials come from the environment (see
``tasks.storage``), never from parameters, which Prefect records.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFutureList

from tasks.convert import copy_images
from tasks.datasets import merge
from tasks.datasets.documents import DatasetContent
from tasks.datasets.io import (
    StoredDataset,
    check_locations,
    copy_list,
    hash_images,
    parent_of,
    read_dataset,
    write_dataset,
)
from tasks.datasets.lineage import Parent
from tasks.failures import InvalidSetting

HASH_BATCH = 64  # images per hash or copy task: few enough tasks, retries stay cheap


@flow(name="merge-datasets")
def merge_datasets(base: str, add: str, output: str, val_fraction: float = 0.2) -> dict[str, Any]:
    """Merge the reviewed dataset ``add`` into ``base``, writing a new dataset at ``output``.

    Args:
        base: the current canonical dataset (local path or ``s3://bucket/prefix``).
        add: a canonical dataset of reviewed images, e.g. ``convert-masks``' output of a
            corrected labelme folder; its annotations win for images also in ``base``.
        output: the new dataset's folder; must be neither input nor inside one.
        val_fraction: expected share of new images in ``val`` (images of base keep theirs).

    Returns:
        ``{output, train, val, report, dataset, content_hash, labels, new_labels, images,
        kept, replaced, added, skipped, renamed}``: URIs and counts.
    """
    logger = get_run_logger()
    if not 0.0 <= val_fraction <= 1.0:
        raise InvalidSetting(f"val_fraction must be in [0, 1], got {val_fraction}")
    check_locations(base, add, output)
    reads = [read_dataset.submit(base, "base"), read_dataset.submit(add, "add")]
    stored = [future.result() for future in reads]
    pending = [_hash(dataset.content) for dataset in stored]
    hashes = [
        {name: digest for future in futures for name, digest in future.result().items()}
        for futures in pending
    ]
    parents = [_parent(dataset, found, logger) for dataset, found in zip(stored, hashes)]
    result = merge.merge(stored[0].content, hashes[0], stored[1].content, hashes[1], val_fraction)
    dataset = merge.assemble(result, parents, val_fraction)
    copies = copy_list(dataset)
    batches = [copies[i : i + HASH_BATCH] for i in range(0, len(copies), HASH_BATCH)]
    copy_images.map(batches, unmapped(output)).result()
    written = write_dataset(dataset, output)
    report = dataset.report
    _summary_artifact(report, result.categories)
    logger.info(
        "merged %s into %s: %d kept, %d replaced, %d added -> %s",
        add,
        base,
        result.kept,
        result.replaced,
        result.added,
        output,
    )
    return {
        "output": output,
        **written,
        "content_hash": dataset.description["content_hash"],
        "labels": report["labels"],
        "new_labels": report["new_labels"],
        "images": report["images"],
        "kept": result.kept,
        "replaced": result.replaced,
        "added": result.added,
        "skipped": len(result.skipped),
        "renamed": len(result.renamed),
    }


def _hash(content: DatasetContent) -> PrefectFutureList:
    names = [image.file_name for image in content.images]
    batches = [names[i : i + HASH_BATCH] for i in range(0, len(names), HASH_BATCH)]
    return hash_images.map(unmapped(content.uri), batches)


def _parent(stored: StoredDataset, hashes: dict[str, str], logger: Any) -> Parent:
    parent, computed = parent_of(stored, hashes)
    if parent.content_hash != computed:
        # The lineage keeps the recorded hash (what the registry saw); the files changed since.
        logger.warning(
            "dataset %s records content hash %s in dataset.json but its files hash "
            "to %s: it was changed after it was written",
            parent.uri,
            parent.content_hash,
            computed,
        )
    return parent


def _summary_artifact(report: dict[str, Any], categories: tuple[tuple[int, str], ...]) -> None:
    new = set(report["new_labels"])
    rows = [
        {
            "class": name,
            "id": index,
            "new": name in new,
            "train": report["instances"]["train"][name],
            "val": report["instances"]["val"][name],
        }
        for index, name in categories
    ]
    create_table_artifact(
        rows,
        key="merge-datasets-summary",
        description=(
            f"{report['kept']} base images kept, {report['replaced']} replaced by reviewed ones, "
            f"{report['added']} added, {report['items']['skipped']} duplicates skipped; images "
            f"train {report['images']['train']}, val {report['images']['val']}; new classes: "
            f"{', '.join(report['new_labels']) or '-'}"
        ),
    )
