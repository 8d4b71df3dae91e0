"""The `legacy` format: the dataset folders of the legacy TF 1.15 / Keras 2.3 matterport-based
repository, written by old labelme's ``labelme_json_to_dataset``, to image records.

Layout below a dataset folder (which may sit anywhere under the input root)::

    pic/<stem>.jpg                         the image
    cv2_mask/<stem>.png                    label image, 8- or 16-bit: 0 background, k > 0 one object
    labelme_json/<stem>_json/info.yaml     label_names: [_background_, car1, car2, ...]
                                           newer files: instances: [{id, label, raw_label}]

Each non-zero value is one instance. Its label is ``instances[id].label`` when ``info.yaml``
has that list, else ``label_names[value]`` (e.g. ``car1``, mapped to a class later by the
alias rule).
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np
import yaml

from .formats import AnnotationFormat
from .images import image_size
from .paths import parent_of, stem_of
from .pixels import label_pixels
from .records import Fetch, ImageRecord, Instance, Issue, IssueKind, ReadResult

MASK_FOLDER = "cv2_mask"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG", ".BMP")


def read_legacy(name: str, data: bytes, fetch: Fetch) -> ReadResult:
    """Convert one label image ``<dataset>/cv2_mask/<stem>.png``.

    Args:
        name: path of the label PNG relative to the input root.
        data: its bytes.
        fetch: reads a file relative to the input root (the image and ``info.yaml``).

    Returns:
        One item: an image record (with dropped values as issues) or a SKIPPED issue.
    """
    result = ReadResult(items=1)
    dataset, stem = parent_of(parent_of(name)), stem_of(name)
    try:
        labels = label_pixels(data, name)
        names, by_id = _info(fetch, _join(dataset, f"labelme_json/{stem}_json/info.yaml"))
        file_name, content = _find_image(fetch, dataset, stem)
        height, width = image_size(content, file_name)
        if labels.shape != (height, width):
            raise ValueError(
                f"label image is {labels.shape[1]}x{labels.shape[0]} but image "
                f"{file_name!r} is {width}x{height}"
            )
    except ValueError as error:
        result.skip(name, str(error))
        return result
    instances = []
    for value in np.unique(labels[labels > 0]).tolist():
        label = by_id.get(value) if by_id else (names[value] if value < len(names) else None)
        if not isinstance(label, str) or not label:
            result.issues.append(
                Issue(
                    IssueKind.DROPPED,
                    name,
                    f"value {value} has no label in info.yaml",
                    f"value {value}",
                )
            )
            continue
        instances.append(Instance(label, labels == value, origin=f"value {value} ({label})"))
    for value in sorted(set(by_id) - set(np.unique(labels).tolist())):
        result.issues.append(
            Issue(
                IssueKind.DROPPED,
                name,
                "empty mask (listed in info.yaml, no pixel in the label image)",
                f"instance {value}",
            )
        )
    result.images.append(ImageRecord(file_name, name, height, width, tuple(instances)))
    return result


def _join(folder: str, relative: str) -> str:
    return f"{folder}/{relative}" if folder else relative


def _info(fetch: Fetch, path: str) -> tuple[list[Any], dict[int, Any]]:
    """``label_names`` and the ``instances`` id -> label map (empty when absent)."""
    try:
        info = yaml.safe_load(fetch(path))
    except FileNotFoundError:
        raise ValueError(f"missing {path}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"malformed YAML in {path} ({error})".replace("\n", " ")) from None
    names = info.get("label_names") if isinstance(info, dict) else None
    if not isinstance(names, list):
        raise ValueError(f"{path} has no label_names list")
    instances = info.get("instances") or []
    if not isinstance(instances, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("id"), int) for entry in instances
    ):
        raise ValueError(f"{path}: instances must be a list of {{id, label, raw_label}}")
    return names, {entry["id"]: entry.get("label") for entry in instances}


def _find_image(fetch: Fetch, dataset: str, stem: str) -> tuple[str, bytes]:
    """The image ``pic/<stem>.<suffix>`` beside the label image."""
    for suffix in IMAGE_SUFFIXES:
        candidate = _join(dataset, f"pic/{stem}{suffix}")
        try:
            return candidate, fetch(candidate)
        except FileNotFoundError:
            continue
    raise ValueError(f"image {_join(dataset, 'pic/' + stem)}.jpg (or .png, .bmp) not found")


def is_legacy_source(relative: str) -> bool:
    """A ``*.png`` directly in a ``cv2_mask`` folder."""
    return (
        relative.lower().endswith(".png")
        and posixpath.basename(posixpath.dirname(relative)) == MASK_FOLDER
    )


FORMAT = AnnotationFormat(
    "legacy",
    "the folders of labelme_json_to_dataset: pic/, cv2_mask/, info.yaml",
    f"{MASK_FOLDER}/*.png",
    is_legacy_source,
    read_legacy,
)
