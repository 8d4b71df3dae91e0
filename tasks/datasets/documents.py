"""A canonical dataset's COCO documents as plain values, and back.

``parse_documents`` checks that ``annotations/train.json`` and ``val.json`` form a canonical
dataset (the same categories in both, every annotation on a listed image of a listed class,
each ``file_name`` once, relative and inside ``images/``) and returns its images with their
annotations, classes resolved to names. ``build_documents`` writes images back as the two
documents, with ids assigned as ``convert-masks`` assigns them: images sorted by
``file_name`` get ids 1..N, annotations are numbered in that order across both splits. The
annotation fields kept are the canonical ones (``segmentation`` as stored, usually a
compressed RLE, ``area``, ``bbox``, ``iscrowd``); other keys are not carried over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.annotations.canonical import SPLITS
from tasks.annotations.paths import resolve_inside
from tasks.failures import InvalidInput

MERGE_DESCRIPTION = "canonical dataset written by merge-datasets"


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One instance of an image, its class by name (ids differ between datasets)."""

    label: str
    segmentation: Any  # as stored: a compressed RLE dict in a canonical dataset
    area: Any
    bbox: Any
    iscrowd: int


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    """One image of a dataset and where its bytes are.

    Attributes:
        file_name: path below ``images/`` in the dataset it belongs to.
        split: ``"train"`` or ``"val"``.
        height, width: size in pixels.
        annotations: its instances, in annotation id order.
        origin: URI of the dataset whose ``images/`` folder holds the bytes.
        origin_name: the image's ``file_name`` in ``origin`` (differs from ``file_name``
            once a merge renamed or re-homed the image).
    """

    file_name: str
    split: str
    height: int
    width: int
    annotations: tuple[Annotation, ...]
    origin: str
    origin_name: str


@dataclasses.dataclass(frozen=True)
class DatasetContent:
    """A parsed canonical dataset.

    Attributes:
        uri: where it was read from.
        categories: ``(id, name)`` in id order (the same in both splits).
        images: every image, sorted by ``file_name``.
    """

    uri: str
    categories: tuple[tuple[int, str], ...]
    images: tuple[ImageEntry, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in id order."""
        return tuple(name for _, name in self.categories)


class NotCanonicalError(InvalidInput):
    """A folder's documents do not form a canonical dataset."""


def not_canonical(role: str, uri: str, reason: str) -> NotCanonicalError:
    """The one-line error for a folder that is not a canonical dataset."""
    return NotCanonicalError(f"{role} dataset {uri!r} is not a canonical dataset: {reason}")


def parse_documents(uri: str, documents: Mapping[str, Any], role: str = "the") -> DatasetContent:
    """Check and parse a canonical dataset's ``train`` and ``val`` documents.

    Args:
        uri: the dataset's URI (its images are ``<uri>/images/<file_name>``).
        documents: ``"train"``/``"val"`` -> the parsed ``annotations/<split>.json``.
        role: how errors name the dataset, e.g. ``"base"``.

    Raises:
        NotCanonicalError: naming ``uri`` and what is wrong.
    """
    categories: tuple[tuple[int, str], ...] | None = None
    images: list[ImageEntry] = []
    for split in SPLITS:
        where = f"annotations/{split}.json"
        try:
            found, entries = _parse_split(uri, split, documents[split])
        except (KeyError, TypeError, ValueError) as error:
            raise not_canonical(role, uri, f"{where}: {_reason(error)}") from None
        if categories is not None and found != categories:
            raise not_canonical(role, uri, "train.json and val.json have different categories")
        categories = found
        images.extend(entries)
    seen: set[str] = set()
    for image in images:
        if image.file_name in seen:
            raise not_canonical(role, uri, f"image {image.file_name!r} is listed twice")
        seen.add(image.file_name)
    return DatasetContent(uri, categories or (), tuple(sorted(images, key=lambda i: i.file_name)))


def _reason(error: Exception) -> str:
    # A KeyError's text is only the key; say that it is a missing field.
    return f"missing field {error}" if isinstance(error, KeyError) else str(error)


def _parse_split(
    uri: str, split: str, document: Any
) -> tuple[tuple[tuple[int, str], ...], list[ImageEntry]]:
    if not isinstance(document, dict) or not all(
        isinstance(document.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise ValueError("not a COCO instances document (lists images, annotations, categories)")
    categories = tuple(sorted((int(c["id"]), str(c["name"])) for c in document["categories"]))
    names = dict(categories)
    if len(names) != len(categories) or len(set(names.values())) != len(names):
        raise ValueError("a category id or name is listed twice")
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for annotation in document["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    images = []
    for entry in document["images"]:
        file_name = _checked_name(entry["file_name"])
        listed = sorted(by_image.pop(entry["id"], []), key=lambda a: a["id"])
        annotations = tuple(_annotation(a, names) for a in listed)
        images.append(
            ImageEntry(
                file_name,
                split,
                int(entry["height"]),
                int(entry["width"]),
                annotations,
                uri,
                file_name,
            )
        )
    if by_image:
        raise ValueError(f"annotations refer to image ids not in the file: {sorted(by_image)[:5]}")
    return categories, images


def _checked_name(value: Any) -> str:
    # The name is a path below images/ of the input and of the output: it must stay there.
    try:
        inside = isinstance(value, str) and resolve_inside("", value) == value
    except ValueError:
        inside = False
    if not inside:
        raise ValueError(f"image file_name {value!r} is not a normalised path inside images/")
    return value


def _annotation(entry: Mapping[str, Any], names: Mapping[int, str]) -> Annotation:
    category = int(entry["category_id"])
    if category not in names:
        raise ValueError(f"annotation {entry['id']} has an unknown category_id {category}")
    return Annotation(
        names[category],
        entry["segmentation"],
        entry["area"],
        entry["bbox"],
        int(entry.get("iscrowd", 0)),
    )


def build_documents(
    images: Sequence[ImageEntry],
    categories: Sequence[tuple[int, str]],
    description: str = MERGE_DESCRIPTION,
) -> dict[str, dict[str, Any]]:
    """``"train"``/``"val"`` -> COCO document, ids assigned in ``file_name`` order.

    Args:
        images: the dataset's images (any order; they are sorted here).
        categories: ``(id, name)`` in id order; every annotation's label must be among them.
        description: the documents' ``info.description``.
    """
    ids = {name: index for index, name in categories}
    listed = [{"id": index, "name": name} for index, name in categories]
    documents = {
        split: {
            "info": {"description": description, "split": split},
            "images": [],
            "annotations": [],
            "categories": listed,
        }
        for split in SPLITS
    }
    annotation_id = 0
    for image_id, image in enumerate(sorted(images, key=lambda i: i.file_name), start=1):
        document = documents[image.split]
        document["images"].append(
            {
                "id": image_id,
                "file_name": image.file_name,
                "height": image.height,
                "width": image.width,
            }
        )
        for annotation in image.annotations:
            annotation_id += 1
            document["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": ids[annotation.label],
                    "segmentation": annotation.segmentation,
                    "area": annotation.area,
                    "bbox": annotation.bbox,
                    "iscrowd": annotation.iscrowd,
                }
            )
    return documents
