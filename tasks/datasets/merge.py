"""The rules of ``merge-datasets``: a base dataset and reviewed additions -> a new dataset.

Users correct model predictions in labelme, ``convert-masks`` turns the reviewed folder into
a canonical dataset (``add``), and the merge folds it into the current dataset (``base``).
Images are identified by the SHA-256 of their bytes, never by name:

- **Duplicates within one dataset** (equal bytes under two names) keep the image whose
  ``file_name`` sorts first; the others are skipped and reported.
- **Reviewed wins.** An image of ``add`` whose bytes equal an image of ``base`` replaces
  base's annotations of it, and keeps base's ``file_name`` and split.
- **Stable split.** An image already in ``base`` keeps its split: a train image never moves
  to val, so a model trained on ``base`` never finds its own training images in the new val
  split. A new image's split is ``canonical.split_of(<its sha256 hex>, val_fraction)``: the
  same image lands in the same split whatever it is merged with.
- **File names.** A new image keeps its ``file_name``; when base holds that name with other
  bytes, it goes to ``<first 12 hex digits of its sha256>/<file_name>`` (reported as
  ``renamed``). Images are copied from the dataset they come from (base's bytes for a
  replaced image: they are the same).
- **Classes** match by name. Base's categories keep their ids and order; classes new in
  ``add`` are appended in add's id order with the next ids (a model fine-tuned from one
  trained on ``base`` needs new heads for them: they are listed as ``new_labels``).
- **Ids** are renumbered as ``convert-masks`` does (images by ``file_name``), and nothing
  records time or place of the run, so the same inputs give the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.annotations.canonical import SPLITS, split_of
from tasks.annotations.records import Issue, IssueKind
from tasks.datasets import lineage
from tasks.datasets.documents import DatasetContent, ImageEntry, build_documents
from tasks.failures import InvalidInput, InvalidSetting

HASH_PREFIX = 12  # hex digits of the content hash in front of a colliding file name


@dataclasses.dataclass(frozen=True)
class MergeResult:
    """The merged dataset as values.

    Attributes:
        images: the output images, sorted by ``file_name`` (their final names and splits).
        hashes: output ``file_name`` -> SHA-256 hex of the image's bytes.
        categories: ``(id, name)`` in id order.
        new_classes: classes of ``add`` that ``base`` did not have, in their id order.
        found: images listed in base and add together.
        kept: base images whose annotations stayed.
        replaced: base images whose annotations the reviewed copy replaced.
        added: images new to base.
        renamed: ``(file_name in add, file_name in the output)`` of re-homed images.
        skipped: duplicates within one dataset that were left out.
    """

    images: tuple[ImageEntry, ...]
    hashes: Mapping[str, str]
    categories: tuple[tuple[int, str], ...]
    new_classes: tuple[str, ...]
    found: int
    kept: int
    replaced: int
    added: int
    renamed: tuple[tuple[str, str], ...]
    skipped: tuple[Issue, ...]


@dataclasses.dataclass(frozen=True)
class MergedDataset:
    """Everything ``merge-datasets`` writes, in memory.

    Attributes:
        documents: ``"train"``/``"val"`` -> COCO document.
        report: the ``report.json`` document.
        description: the ``dataset.json`` document.
        copies: ``(dataset URI, file_name there, file_name in the output)`` per image.
    """

    documents: dict[str, dict[str, Any]]
    report: dict[str, Any]
    description: dict[str, Any]
    copies: tuple[tuple[str, str, str], ...]


def unique_by_content(
    content: DatasetContent, hashes: Mapping[str, str]
) -> tuple[dict[str, ImageEntry], list[Issue]]:
    """One image per content hash, the first by ``file_name``; the others as skipped issues.

    Returns:
        ``(content hash -> image, issues)``.
    """
    kept: dict[str, ImageEntry] = {}
    issues = []
    for image in content.images:  # sorted by file_name
        digest = hashes[image.file_name]
        first = kept.setdefault(digest, image)
        if first is not image:
            issues.append(
                Issue(
                    IssueKind.SKIPPED,
                    content.uri,
                    f"same image bytes as {first.file_name!r} (kept)",
                    f"image {image.file_name}",
                )
            )
    return kept, issues


def merge_categories(
    base: Sequence[tuple[int, str]], add: Sequence[tuple[int, str]]
) -> tuple[tuple[tuple[int, str], ...], tuple[str, ...]]:
    """Base's ``(id, name)`` as they are, then add's new names with the next ids.

    Returns:
        ``(categories, new class names)``.
    """
    known = {name for _, name in base}
    new = tuple(name for _, name in add if name not in known)
    start = max((index for index, _ in base), default=0) + 1
    return tuple(base) + tuple(enumerate(new, start=start)), new


def placed_name(file_name: str, digest: str, base_names: set[str]) -> str:
    """Where a new image goes: its own name, or below its hash prefix when base has it."""
    return f"{digest[:HASH_PREFIX]}/{file_name}" if file_name in base_names else file_name


def merge(
    base: DatasetContent,
    base_hashes: Mapping[str, str],
    add: DatasetContent,
    add_hashes: Mapping[str, str],
    val_fraction: float,
) -> MergeResult:
    """Merge reviewed additions into a base dataset (rules in the module docstring).

    Args:
        base, add: the parsed datasets.
        base_hashes, add_hashes: ``file_name`` -> SHA-256 hex of the image's bytes.
        val_fraction: expected share of new images in ``val``, in [0, 1].

    Raises:
        ValueError: a bad ``val_fraction``, or two images that would get one name.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise InvalidSetting(f"val_fraction must be in [0, 1], got {val_fraction}")
    base_images, skipped = unique_by_content(base, base_hashes)
    add_images, add_skipped = unique_by_content(add, add_hashes)
    categories, new_classes = merge_categories(base.categories, add.categories)
    output = dict(base_images)
    base_names = {image.file_name for image in base_images.values()}
    names = {image.file_name: digest for digest, image in base_images.items()}
    replaced, renamed = 0, []
    for digest, image in add_images.items():
        previous = output.get(digest)
        if previous is not None:  # reviewed wins; base's name, split and bytes stay
            output[digest] = dataclasses.replace(previous, annotations=image.annotations)
            replaced += 1
            continue
        name = placed_name(image.file_name, digest, base_names)
        if name in names:  # only if add itself holds that hash-prefixed name
            raise InvalidInput(
                f"image {image.file_name!r} of {add.uri!r} would be written as "
                f"{name!r}, which another image already takes"
            )
        if name != image.file_name:
            renamed.append((image.file_name, name))
        names[name] = digest
        output[digest] = dataclasses.replace(
            image, file_name=name, split=split_of(digest, val_fraction)
        )
    images = tuple(sorted(output.values(), key=lambda i: i.file_name))
    return MergeResult(
        images,
        {name: names[name] for name in sorted(names)},
        categories,
        new_classes,
        len(base.images) + len(add.images),
        len(base_images) - replaced,
        replaced,
        len(add_images) - replaced,
        tuple(sorted(renamed)),
        tuple(skipped + add_skipped),
    )


def assemble(
    result: MergeResult, parents: Sequence[lineage.Parent], val_fraction: float
) -> MergedDataset:
    """The documents, ``report.json`` and ``dataset.json`` of a merge.

    Args:
        result: what ``merge`` decided.
        parents: base, then add, with their content hashes.
        val_fraction: the merge's parameter, for the report.
    """
    documents = build_documents(result.images, result.categories)
    description = lineage.describe_dataset(
        documents, result.hashes, parents, result.replaced, result.added
    )
    report = _report(result, documents, parents, val_fraction)
    copies = tuple((image.origin, image.origin_name, image.file_name) for image in result.images)
    return MergedDataset(documents, report, description, copies)


def _report(
    result: MergeResult,
    documents: Mapping[str, dict[str, Any]],
    parents: Sequence[lineage.Parent],
    val_fraction: float,
) -> dict[str, Any]:
    # convert-masks' report.json where a field applies; "items" adds "replaced" so that
    # found = converted + skipped + replaced (a replaced image is found twice, written once).
    counts = lineage.count_instances(documents)
    by_kind = {
        kind.value: [issue.to_json() for issue in result.skipped if issue.kind is kind]
        for kind in IssueKind
    }
    return {
        "format": "merge",
        "base": parents[0].uri,
        "add": parents[1].uri,
        "labels": counts.classes,
        "new_labels": list(result.new_classes),
        "val_fraction": val_fraction,
        "items": {
            "found": result.found,
            "converted": len(result.images),
            "skipped": len(result.skipped),
            "replaced": result.replaced,
        },
        "images": {split: len(documents[split]["images"]) for split in SPLITS},
        "instances": counts.instances,
        "crowd": counts.crowd,
        "kept": result.kept,
        "replaced": result.replaced,
        "added": result.added,
        "renamed": [{"from": old, "to": new} for old, new in result.renamed],
        **by_kind,
    }
