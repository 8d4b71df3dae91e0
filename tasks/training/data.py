"""The canonical dataset for training and evaluation: fetched to a local folder and hashed."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tasks import storage
from tasks.annotations.canonical import SPLITS
from tasks.failures import InvalidInput, MissingInput
from tasks.training.runs import absolute


@dataclass(frozen=True)
class FetchedDataset:
    """The canonical dataset in a local folder (`<root>/images`, `<root>/annotations`)."""

    uri: str
    root: str
    content_hash: str  # sha256 over annotation files and image bytes
    class_names: list[str]
    images: dict[str, int]  # images per split


def fetch_dataset(uri: str, cache_dir: str, splits: Sequence[str] = SPLITS) -> FetchedDataset:
    """Make the dataset at `uri` readable locally (remote files are copied) and hash it.

    Raises:
        FileNotFoundError: the dataset, a split's annotation file or an image is missing.
        ValueError: invalid JSON, or splits whose categories differ.
    """
    if not storage.exists(uri):
        raise MissingInput(f"dataset {uri!r} does not exist")
    local = storage.is_local(uri)
    uri = absolute(uri)
    root = uri if local else os.path.join(cache_dir, "dataset")
    digest, documents, names = hashlib.sha256(), {}, {}
    for split in splits:
        ann_uri = storage.join(uri, "annotations", f"{split}.json")
        try:
            raw = storage.read_bytes(ann_uri)
            documents[split] = json.loads(raw)
        except FileNotFoundError:
            raise MissingInput(
                f"dataset {uri!r} has no {split!r} split: {ann_uri!r} not found"
            ) from None
        except ValueError as error:
            raise InvalidInput(
                f"{split} annotations {ann_uri!r} are not valid JSON: {error}"
            ) from None
        names[split] = [
            c["name"] for c in sorted(documents[split].get("categories", []), key=lambda c: c["id"])
        ]
        digest.update(f"annotations/{split}.json:{hashlib.sha256(raw).hexdigest()}\n".encode())
        if not local:
            storage.write_bytes(os.path.join(root, "annotations", f"{split}.json"), raw)
    if len({tuple(v) for v in names.values()}) > 1:
        raise InvalidInput(f"the splits of dataset {uri!r} have different categories: {names}")
    files = sorted(
        {image["file_name"] for doc in documents.values() for image in doc.get("images", [])}
    )
    with ThreadPoolExecutor(8) as pool:
        for file_name, image_hash in zip(
            files, pool.map(lambda f: _fetch_image(uri, root, f, local), files)
        ):
            digest.update(f"images/{file_name}:{image_hash}\n".encode())
    return FetchedDataset(
        uri,
        root,
        digest.hexdigest(),
        names[splits[0]],
        {split: len(doc.get("images", [])) for split, doc in documents.items()},
    )


def _fetch_image(uri: str, root: str, file_name: str, local: bool) -> str:
    image_uri = storage.join(uri, "images", file_name)
    try:
        data = storage.read_bytes(image_uri)
    except FileNotFoundError:
        raise MissingInput(f"image {image_uri!r} of dataset {uri!r} not found") from None
    if not local:
        storage.write_bytes(os.path.join(root, "images", file_name), data)
    return hashlib.sha256(data).hexdigest()


def check_classes(expected: Sequence[str], fetched: FetchedDataset, owner: str) -> None:
    """Raise ValueError when `owner`'s classes differ from the dataset's categories."""
    if list(expected) != fetched.class_names:
        raise InvalidInput(
            f"the classes of {owner} {list(expected)} differ from the categories of "
            f"dataset {fetched.uri!r} (in id order): {fetched.class_names}"
        )


def load_split(root: str, subset: str, class_names: Sequence[str], config: Any) -> Any:
    """A prepared `mrcnn.dataset.CocoDataset` of one split of a fetched dataset, reading images
    with the normalisation of ``config`` (an `mrcnn.config.Config`)."""
    from mrcnn.dataset import CocoDataset
    from mrcnn.intensity import Normalization

    dataset = CocoDataset()
    dataset.normalization = Normalization.from_config(config)
    dataset.load_coco(root, subset, class_names=list(class_names))
    dataset.prepare()
    return dataset
