"""Small value types passed from the readers to the dataset writer.

An ``Instance`` is one object: a raw label and a bool mask ``[H, W]``. An ``ImageRecord`` is
one image with its instances. An ``Issue`` is something that did not convert as-is, with the
file and the reason, destined for ``report.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from enum import Enum
from typing import Any

import numpy as np

# Reads a file given its path relative to the input root; raises FileNotFoundError.
Fetch = Callable[[str], bytes]


class IssueKind(str, Enum):
    """How bad an issue is."""

    SKIPPED = "skipped"  # a whole item (file, image entry) did not convert
    DROPPED = "dropped"  # one shape/region/annotation was left out, the image converted
    CLIPPED = "clipped"  # coordinates outside the image; the instance was clipped and kept


@dataclasses.dataclass(frozen=True)
class Issue:
    """One entry of the report: what happened to which file (and which part of it)."""

    kind: IssueKind
    file: str
    reason: str
    item: str | None = None  # e.g. "shape 3"; None when the whole file/entry is meant

    def message(self) -> str:
        """One line: ``file: item: reason``."""
        parts = [self.file] + ([self.item] if self.item else []) + [self.reason]
        return ": ".join(parts)

    def to_json(self) -> dict:
        """JSON-able form (the ``kind`` is implied by the report list it goes in)."""
        entry = {"file": self.file}
        if self.item:
            entry["item"] = self.item
        entry["reason"] = self.reason
        return entry


@dataclasses.dataclass(frozen=True)
class Instance:
    """One object.

    Attributes:
        label: the label as annotated (aliases are resolved later, dataset-wide).
        mask: bool ``[H, W]``, or a crop of it when ``offset`` is set.
        crowd: a COCO crowd region (``iscrowd=1``).
        origin: where in the file it came from, for the report (e.g. ``"shape 3"``).
        offset: ``(top, left)`` of the cropped ``mask`` in the image. Readers of images with
            hundreds of objects keep crops, so that an image's masks fit in memory.
    """

    label: str
    mask: np.ndarray
    crowd: bool = False
    origin: str = ""
    offset: tuple[int, int] | None = None

    def full_mask(self, height: int, width: int) -> np.ndarray:
        """The mask as bool ``[height, width]`` (the image's size)."""
        if self.offset is None:
            return self.mask
        top, left = self.offset
        full = np.zeros((height, width), dtype=bool)
        full[top : top + self.mask.shape[0], left : left + self.mask.shape[1]] = self.mask
        return full


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image and its instances.

    Attributes:
        file_name: path of the image relative to the input root; also its path below
            ``<dest>/images/``.
        source: the annotation file (relative to the input root) it came from.
        height, width: image size in pixels.
        instances: the image's objects, in annotation order.
        image_bytes: set when the image to write differs from the file at ``file_name``
            (embedded ``imageData``, EXIF rotation applied); otherwise that file is copied.
        image_path: where the image file lies below the input root, when that differs from
            ``file_name`` (COCO looks for images in several folders).
    """

    file_name: str
    source: str
    height: int
    width: int
    instances: tuple[Instance, ...] = ()
    image_bytes: bytes | None = None
    image_path: str | None = None


@dataclasses.dataclass
class ReadResult:
    """What a reader made of one source file.

    Attributes:
        items: how many items (images, or the file itself when it cannot be parsed) the file
            holds; every item ends up either in ``images`` or as a SKIPPED issue.
        images: converted images.
        issues: every problem, in file order.
        labels: labels the source declares in order (COCO categories), if any.
        category_ids: for COCO, the source's category id → label name.
        ignored: shapes deliberately left out (labelme's ``__ignore__``/``_background_``).
    """

    items: int = 0
    images: list[ImageRecord] = dataclasses.field(default_factory=list)
    issues: list[Issue] = dataclasses.field(default_factory=list)
    labels: tuple[str, ...] = ()
    category_ids: dict[int, str] = dataclasses.field(default_factory=dict)
    ignored: int = 0

    def skip(self, file: str, reason: str, item: str | None = None) -> None:
        """Record a whole item that did not convert."""
        self.issues.append(Issue(IssueKind.SKIPPED, file, reason, item))

    def admit(
        self,
        instances: list[Instance],
        file: str,
        item: str,
        label: str,
        mask: np.ndarray,
        clipped: bool,
    ) -> None:
        """Append one drawn shape to ``instances``: reported when it left the image, dropped
        (and reported) when no pixel of it is inside."""
        if clipped:
            height, width = mask.shape
            self.issues.append(
                Issue(
                    IssueKind.CLIPPED,
                    file,
                    f"coordinates outside the {width}x{height} image; clipped",
                    item,
                )
            )
        if not mask.any():
            self.issues.append(
                Issue(IssueKind.DROPPED, file, "empty mask (no pixel inside the image)", item)
            )
            return
        instances.append(Instance(label, mask, origin=item))


@dataclasses.dataclass
class ShapeGroups:
    """Shape masks united per ``(label, group)``, as labelme's and CVAT's ``group_id`` unite
    them: a shape without a group is an instance of its own. Order is first-seen."""

    masks: dict[tuple[str, object], tuple[np.ndarray, list[int]]] = dataclasses.field(
        default_factory=dict
    )

    def add(self, label: str, group: object | None, index: int, mask: np.ndarray) -> None:
        """Add shape ``index`` (its number in the file) to its instance."""
        key = (label, ("shape", index) if group is None else ("group", group))
        if key in self.masks:
            self.masks[key][0][...] |= mask
            self.masks[key][1].append(index)
        else:
            self.masks[key] = (mask.copy(), [index])

    def instances(self, file: str, prefix: str = "") -> tuple[list[Instance], list[Issue]]:
        """One instance per group; a group without a pixel inside the image is dropped.

        Args:
            file: the annotation file, for the issues.
            prefix: put before ``shape(s) i, j (label)`` in the instance's origin.
        """
        instances, issues = [], []
        for (label, _), (mask, indices) in self.masks.items():
            which = "shape" if len(indices) == 1 else "shapes"
            origin = f"{prefix}{which} {', '.join(map(str, indices))} ({label})"
            if mask.any():
                instances.append(Instance(label, mask, origin=origin))
            else:
                issues.append(
                    Issue(IssueKind.DROPPED, file, "empty mask (no pixel inside the image)", origin)
                )
        return instances, issues


def load_json(data: bytes) -> Any:
    """Parse an annotation file's bytes; malformed JSON is a ValueError saying so."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"malformed JSON ({error})") from None
