"""The canonical dataset: COCO instances JSON with RLE masks, a deterministic split, a report.

Layout below the destination::

    images/<file_name>          the images, at their path relative to the input root
    annotations/train.json      COCO instances; segmentation = compressed RLE
    annotations/val.json
    report.json                 counts per class and split, every skipped/dropped/clipped item
    dataset.json                content hash and counts (written by the flow, tasks.datasets)

Conversion runs in two steps so that sources can be read in parallel: ``summarize`` turns one
source's ``ReadResult`` into a small JSON-able summary (labels resolved, masks as RLE), and
``build_dataset`` merges all summaries into the output documents. The output depends only on
the input: images are sorted by ``file_name``, ids are assigned in that order, the split is a
hash of ``file_name``, and nothing records time or place of the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pycocotools.mask as mask_utils

from tasks.failures import InvalidSetting

from .labels import LabelMap
from .records import Issue, IssueKind, ReadResult
from .rle import encode_rle

SPLITS = ("train", "val")
ANNOTATIONS_FOLDER = "annotations"
IMAGES_FOLDER = "images"
REPORT_NAME = "report.json"


def split_of(file_name: str, val_fraction: float) -> str:
    """``"val"`` for about ``val_fraction`` of file names, chosen by a SHA-1 of the name.

    The same name always lands in the same split, whatever else is in the dataset.
    """
    digest = hashlib.sha1(file_name.encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2.0**64 < val_fraction else "train"


def summarize(
    source: str, result: ReadResult, labels: LabelMap, image_uris: Mapping[str, str]
) -> dict[str, Any]:
    """One source's result as a small JSON-able summary, labels resolved to classes.

    Args:
        source: the source file, relative to the input root.
        result: what a reader made of the source.
        labels: resolves annotated labels; an unknown label drops its instance.
        image_uris: ``file_name`` -> URI the image will be copied from.

    Returns:
        ``{source, items, ignored, labels, category_ids, images: [{file_name, source, height,
        width, image_uri, instances: [{label, iscrowd, segmentation, area, bbox}]}], issues}``;
        ``labels`` and ``category_ids`` (old id -> class, None if unknown) for COCO sources.
    """
    issues = list(result.issues)
    images = []
    for record in result.images:
        instances = []
        for instance in record.instances:
            try:
                label = labels.resolve(instance.label)
            except ValueError as error:
                issues.append(Issue(IssueKind.DROPPED, record.source, str(error), instance.origin))
                continue
            rle = encode_rle(instance.full_mask(record.height, record.width))
            x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
            instances.append(
                {
                    "label": label,
                    "iscrowd": int(instance.crowd),
                    "segmentation": rle,
                    "area": int(mask_utils.area(rle)),
                    "bbox": [x, y, w, h],
                }
            )
        images.append(
            {
                "file_name": record.file_name,
                "source": record.source,
                "height": record.height,
                "width": record.width,
                "image_uri": image_uris[record.file_name],
                "instances": instances,
            }
        )
    classes = {key: _resolved_or_none(labels, name) for key, name in result.category_ids.items()}
    declared = [_resolved_or_none(labels, name) for name in result.labels]
    return {
        "source": source,
        "items": result.items,
        "ignored": result.ignored,
        "labels": [name for name in declared if name is not None],
        "category_ids": {str(key): classes[key] for key in sorted(classes)},
        "images": images,
        "issues": [{"kind": issue.kind.value, **issue.to_json()} for issue in issues],
    }


def _resolved_or_none(labels: LabelMap, name: str) -> str | None:
    # An unused category outside the label list is harmless; its annotations were reported.
    try:
        return labels.resolve(name)
    except ValueError:
        return None


@dataclasses.dataclass
class CanonicalDataset:
    """Everything to write, in memory (masks are RLE strings, images are URIs).

    Attributes:
        documents: ``"train"``/``"val"`` -> COCO instances document.
        report: the ``report.json`` document.
        copies: ``(image URI, file_name)`` for every image to place below ``images/``.
        problems: every issue as one line ``file: item: reason``, in input order (what a
            strict run fails on).
    """

    documents: dict[str, dict[str, Any]]
    report: dict[str, Any]
    copies: list[tuple[str, str]]
    problems: list[str]


def build_dataset(
    summaries: Sequence[Mapping[str, Any]],
    labels: LabelMap,
    val_fraction: float,
    fmt: str,
    source: str,
) -> CanonicalDataset:
    """Merge per-source summaries (in source order) into the canonical dataset.

    Duplicate image names keep the first occurrence; later ones are skipped with a reason.

    Args:
        summaries: ``summarize`` outputs, sorted by source name.
        labels: the label map (its list, if any, fixes the categories).
        val_fraction: expected share of images in ``val``, in [0, 1].
        fmt: input format name, for the report.
        source: input URI, for the report.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise InvalidSetting(f"val_fraction must be in [0, 1], got {val_fraction}")
    issues: list[dict[str, Any]] = []
    kept: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        issues.extend(summary["issues"])
        for image in summary["images"]:
            first = kept.get(image["file_name"])
            if first is None:
                kept[image["file_name"]] = image
                continue
            issues.append(
                {
                    "kind": IssueKind.SKIPPED.value,
                    "file": image["source"],
                    "item": f"image {image['file_name']}",
                    "reason": f"duplicate image name (already taken from {first['source']!r})",
                }
            )
    found = {i["label"] for image in kept.values() for i in image["instances"]}
    classes = labels.categories(found, [n for s in summaries for n in s["labels"]])
    ids = {name: index + 1 for index, name in enumerate(classes)}
    images = [kept[name] for name in sorted(kept)]
    documents = _documents(images, ids, val_fraction, fmt)
    report = _report(summaries, issues, documents, classes, ids, val_fraction, fmt, source)
    problems = [
        Issue(IssueKind(i["kind"]), i["file"], i["reason"], i.get("item")).message() for i in issues
    ]
    return CanonicalDataset(
        documents, report, [(i["image_uri"], i["file_name"]) for i in images], problems
    )


def _documents(
    images: list[dict[str, Any]], ids: Mapping[str, int], val_fraction: float, fmt: str
) -> dict[str, dict[str, Any]]:
    categories = [{"id": index, "name": name} for name, index in ids.items()]
    documents = {
        split: {
            "info": {
                "description": "canonical dataset written by convert-masks",
                "format": fmt,
                "split": split,
            },
            "images": [],
            "annotations": [],
            "categories": categories,
        }
        for split in SPLITS
    }
    annotation_id = 0
    for image_id, image in enumerate(images, start=1):
        document = documents[split_of(image["file_name"], val_fraction)]
        document["images"].append(
            {
                "id": image_id,
                "file_name": image["file_name"],
                "height": image["height"],
                "width": image["width"],
            }
        )
        for instance in image["instances"]:
            annotation_id += 1
            document["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": ids[instance["label"]],
                    "segmentation": instance["segmentation"],
                    "area": instance["area"],
                    "bbox": instance["bbox"],
                    "iscrowd": instance["iscrowd"],
                }
            )
    return documents


def _report(
    summaries: Sequence[Mapping[str, Any]],
    issues: list[dict[str, Any]],
    documents: Mapping[str, dict[str, Any]],
    classes: list[str],
    ids: Mapping[str, int],
    val_fraction: float,
    fmt: str,
    source: str,
) -> dict[str, Any]:
    names = {index: name for name, index in ids.items()}
    instances = {split: dict.fromkeys(classes, 0) for split in SPLITS}
    crowd = dict.fromkeys(SPLITS, 0)
    for split, document in documents.items():
        for annotation in document["annotations"]:
            if annotation["iscrowd"]:
                crowd[split] += 1
            else:
                instances[split][names[annotation["category_id"]]] += 1
    by_kind = {
        kind.value: [
            {k: v for k, v in issue.items() if k != "kind"}
            for issue in issues
            if issue["kind"] == kind.value
        ]
        for kind in IssueKind
    }
    return {
        "format": fmt,
        "source": source,
        "labels": classes,
        "val_fraction": val_fraction,
        "items": {
            "found": sum(s["items"] for s in summaries),
            "converted": sum(len(d["images"]) for d in documents.values()),
            "skipped": len(by_kind["skipped"]),
        },
        "images": {split: len(documents[split]["images"]) for split in SPLITS},
        "instances": instances,
        "crowd": crowd,
        "ignored_shapes": sum(s["ignored"] for s in summaries),
        "category_ids": {
            s["source"]: {old: ids.get(name) for old, name in s["category_ids"].items()}
            for s in summaries
            if s["category_ids"]
        },
        **by_kind,
    }


def dumps(document: Mapping[str, Any], indent: int | None = None) -> bytes:
    """Serialise with a fixed format so that equal documents give equal bytes."""
    text = json.dumps(
        document,
        ensure_ascii=False,
        indent=indent,
        separators=(",", ": ") if indent else (",", ":"),
    )
    return (text + "\n").encode("utf-8")
