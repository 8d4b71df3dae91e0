"""``dataset.json``: what a canonical dataset holds, a hash of its content, and its parents.

::

    {"schema": 1,
     "content_hash": "<sha256 hex>",
     "parents": [{"uri": ..., "content_hash": ...}, ...],   # [] for a converted dataset
     "classes": [names in category id order],
     "images": {"train": n, "val": n},
     "instances": {"train": {class: n}, "val": {class: n}},  # crowd regions not counted
     "replaced": n, "added": n}

The content hash identifies the dataset's content, not where it lies: SHA-256 over one line
per image, ``json.dumps([file_name, image sha256, split])`` sorted, then one line per split,
``annotations/<split>.json <sha256 of the file's bytes>``. Two folders with equal images (by
bytes), equal splits and byte-equal annotation files have equal hashes; a moved copy keeps its
hash. ``report.json`` is not part of it (it names the run's inputs).

``describe_dataset`` is the one way to make the document: ``merge-datasets`` calls it with
two parents; a converter calls it with none, e.g. after writing the documents::

    lineage.describe_dataset(dataset.documents, image_hashes)   # parents=() -> "parents": []

where ``image_hashes`` maps each ``file_name`` to the SHA-256 hex of the image's bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tasks.annotations.canonical import SPLITS, dumps
from tasks.failures import InvalidInput

DATASET_NAME = "dataset.json"
SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Parent:
    """A dataset this one was made from."""

    uri: str
    content_hash: str

    def to_json(self) -> dict[str, str]:
        """The entry of ``dataset.json``'s ``parents``."""
        return {"uri": self.uri, "content_hash": self.content_hash}


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as 64 hex digits (how images are identified)."""
    return hashlib.sha256(data).hexdigest()


def content_hash(
    annotation_bytes: Mapping[str, bytes], images: Iterable[tuple[str, str, str]]
) -> str:
    """A dataset's content hash (see the module docstring).

    Args:
        annotation_bytes: ``"train"``/``"val"`` -> bytes of ``annotations/<split>.json``.
        images: ``(file_name, image sha256, split)`` for every image, in any order.
    """
    digest = hashlib.sha256()
    for entry in sorted(images):
        digest.update(json.dumps(list(entry), ensure_ascii=False).encode("utf-8") + b"\n")
    for split in SPLITS:
        digest.update(f"annotations/{split}.json {sha256_hex(annotation_bytes[split])}\n".encode())
    return digest.hexdigest()


def image_splits(
    documents: Mapping[str, Mapping[str, Any]], image_hashes: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """``(file_name, image sha256, split)`` of every image listed in the documents.

    Raises:
        KeyError: an image has no hash in ``image_hashes``.
    """
    return [
        (image["file_name"], image_hashes[image["file_name"]], split)
        for split in SPLITS
        for image in documents[split]["images"]
    ]


@dataclasses.dataclass(frozen=True)
class InstanceCounts:
    """Instances per split and class (crowd regions apart), as ``report.json`` counts them."""

    classes: list[str]  # in category id order
    instances: dict[str, dict[str, int]]  # split -> class -> instances, crowd not counted
    crowd: dict[str, int]  # split -> crowd regions


def count_instances(documents: Mapping[str, Mapping[str, Any]]) -> InstanceCounts:
    """Count the annotations of ``"train"``/``"val"`` documents that share one category list."""
    categories = sorted(documents[SPLITS[0]]["categories"], key=lambda c: c["id"])
    classes = [category["name"] for category in categories]
    names = {category["id"]: category["name"] for category in categories}
    instances = {split: dict.fromkeys(classes, 0) for split in SPLITS}
    crowd = dict.fromkeys(SPLITS, 0)
    for split in SPLITS:
        for annotation in documents[split]["annotations"]:
            if annotation["iscrowd"]:
                crowd[split] += 1
            else:
                instances[split][names[annotation["category_id"]]] += 1
    return InstanceCounts(classes, instances, crowd)


def describe_dataset(
    documents: Mapping[str, Mapping[str, Any]],
    image_hashes: Mapping[str, str],
    parents: Sequence[Parent] = (),
    replaced: int = 0,
    added: int | None = None,
) -> dict[str, Any]:
    """The ``dataset.json`` document of a canonical dataset.

    Args:
        documents: ``"train"``/``"val"`` -> COCO document, as written with
            ``canonical.dumps`` (its bytes are hashed).
        image_hashes: ``file_name`` -> SHA-256 hex of the image's bytes.
        parents: the datasets it was made from; none for a converted dataset.
        replaced: images whose annotations a parent's reviewed copy replaced.
        added: images new in this dataset; None counts every image (a dataset without
            parents added all of them).
    """
    annotation_bytes = {split: dumps(documents[split]) for split in SPLITS}
    counts = count_instances(documents)
    images = {split: len(documents[split]["images"]) for split in SPLITS}
    return {
        "schema": SCHEMA,
        "content_hash": content_hash(annotation_bytes, image_splits(documents, image_hashes)),
        "parents": [parent.to_json() for parent in parents],
        "classes": counts.classes,
        "images": images,
        "instances": counts.instances,
        "replaced": replaced,
        "added": sum(images.values()) if added is None else added,
    }


def recorded_hash(document: Any) -> str:
    """The content hash a parsed ``dataset.json`` records.

    Raises:
        ValueError: it is not a ``dataset.json`` of a known schema.
    """
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise InvalidInput(f"not a dataset.json of schema {SCHEMA}")
    value = document.get("content_hash")
    if not isinstance(value, str) or len(value) != 64:
        raise InvalidInput("its content_hash is not a SHA-256 hex digest")
    return value
