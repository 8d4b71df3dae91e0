"""Datasets: matterport's `Dataset` registry and a COCO-layout reader.

A dataset holds classes and images from one or more *sources* (e.g. "coco", "shapes").
`prepare()` numbers them consecutively: internal class id 0 is the background "BG", and
`"<source>.<source id>"` keys map source ids to internal ones.

Shorthand: H, W image size; N instances. `load_image` returns RGB uint8 [H, W, 3] (read by
`mrcnn.images`, intensities mapped by the dataset's `normalization`, see `mrcnn.intensity`);
`load_mask` returns bool [H, W, N] masks and int32 [N] class ids (negative = crowd region).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn.errors import InvalidInput, MissingInput
from mrcnn.images import read_image
from mrcnn.intensity import Normalization, to_rgb_uint8

logger = logging.getLogger(__name__)


class Dataset:
    """Base class of datasets (matterport's API).

    Subclass it, call `add_class` / `add_image` in a loader method, override `load_mask`
    (and `image_reference`), then call `prepare()` before use.

    Attributes:
        image_info: one dict per image: "id", "source", "path" plus the loader's kwargs.
        class_info: one dict per class: "source", "id", "name"; entry 0 is "BG".
        normalization: how `load_image` maps intensities to 0-255; `MaskRCNN.train` sets it
            from the config's INTENSITY_NORMALIZATION, so training reads as the model will.
    """

    normalization: Normalization = Normalization()

    def __init__(self, class_map: dict | None = None) -> None:
        # class_map is accepted for matterport compatibility; matterport ignores it too.
        del class_map
        self._image_ids: np.ndarray = np.array([], dtype=np.int64)
        self.image_info: list[dict[str, Any]] = []
        self.class_info: list[dict[str, Any]] = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids: dict[str, list[int]] = {}

    def add_class(self, source: str, class_id: int, class_name: str) -> None:
        """Registers a class; adding the same (source, class_id) again does nothing."""
        if "." in source:
            raise ValueError(f"Source name must not contain a dot: {source!r}")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source: str, image_id: Any, path: str | Path | None, **kwargs: Any) -> None:
        """Registers an image; extra kwargs are kept in its `image_info` entry."""
        self.image_info.append({"id": image_id, "source": source, "path": path, **kwargs})

    def image_reference(self, image_id: int) -> str:
        """Returns a string naming the image (a link, a file name); override in subclasses."""
        return ""

    def prepare(self, class_map: dict | None = None) -> None:
        """Numbers classes and images and builds the source maps. Call it before use."""
        del class_map  # matterport compatibility: accepted and unused
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        # COCO-style names like "person, man" keep only their first part, as matterport does.
        self.class_names = [info["name"].split(",")[0] for info in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": int(i) for i, info in enumerate(self.class_info)
        }
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": int(i) for i, info in enumerate(self.image_info)
        }
        self.sources = sorted({info["source"] for info in self.class_info})
        # Every source also "has" the background class 0.
        self.source_class_ids = {
            source: [
                i for i, info in enumerate(self.class_info) if i == 0 or info["source"] == source
            ]
            for source in self.sources
        }

    def map_source_class_id(self, source_class_id: str) -> int:
        """Maps a "<source>.<id>" key (e.g. "coco.12") to the internal class id."""
        if not hasattr(self, "class_from_source_map"):
            raise RuntimeError("Dataset.prepare() must be called before mapping class ids")
        if source_class_id not in self.class_from_source_map:
            raise KeyError(f"Unknown source class id {source_class_id!r}")
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id: int, source: str) -> int:
        """Returns the source's own id of internal class `class_id`."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(
                f"Class {class_id} belongs to source {info['source']!r}, not {source!r}"
            )
        return info["id"]

    @property
    def image_ids(self) -> np.ndarray:
        """Internal image ids [num_images] (0..num_images-1 after `prepare`)."""
        return self._image_ids

    def source_image_link(self, image_id: int) -> str | Path | None:
        """Returns the path or URL the image was registered with."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id: int) -> np.ndarray:
        """Reads an image file as RGB uint8 [H, W, 3].

        Grey, grey and alpha, palette, RGB and RGBA images of 8 or 16 bits are read (alpha is
        dropped), the EXIF orientation tag is applied so that masks drawn on the upright image
        fit, and intensities become 0-255 as `self.normalization` says.
        """
        return read_rgb_image(self.image_info[image_id]["path"], self.normalization)

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns no instances: bool [H, W, 0] and int32 [0]. Subclasses override this."""
        logger.warning("Dataset.load_mask() returns no instances; define load_mask() in a subclass")
        info = self.image_info[image_id]
        if "height" in info and "width" in info:
            height, width = info["height"], info["width"]
        else:
            height, width = self.load_image(image_id).shape[:2]
        return np.zeros([height, width, 0], dtype=bool), np.zeros([0], dtype=np.int32)


def read_rgb_image(path: str | Path, normalization: Normalization | None = None) -> np.ndarray:
    """Reads an image file as upright RGB uint8 [H, W, 3] (`mrcnn.images.read_image`, then
    `mrcnn.intensity.to_rgb_uint8`; default normalisation ``"scale"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not an image the model reads (`mrcnn.images.UnreadableImage`).
    """
    return to_rgb_uint8(read_image(path), normalization)


class CocoDataset(Dataset):
    """COCO instances annotations in the project's layout.

    Layout: `<root>/images/<file_name>` and `<root>/annotations/<subset>.json`. Masks may be
    polygons, uncompressed RLE or compressed RLE. Annotations with `iscrowd=1` get negative
    class ids (matterport's convention); annotations whose mask is empty are dropped.
    """

    source = "coco"

    def load_coco(
        self, dataset_dir: str | Path, subset: str = "train", class_names: list[str] | None = None
    ) -> None:
        """Registers the classes and images of `<dataset_dir>/annotations/<subset>.json`.

        Args:
            dataset_dir: root of the layout.
            subset: annotation file stem, e.g. "train" or "val".
            class_names: expected category names in category-id order (without "BG").

        Raises:
            FileNotFoundError: the annotation file is missing.
            ValueError: the JSON is malformed or its categories differ from `class_names`.
        """
        root = Path(dataset_dir)
        ann_path = root / "annotations" / f"{subset}.json"
        if not ann_path.is_file():
            raise MissingInput(f"COCO annotation file not found: {ann_path}")
        with ann_path.open(encoding="utf-8") as f:
            coco = json.load(f)
        self.load_coco_dict(coco, root / "images", class_names)

    def load_coco_dict(
        self, coco: dict, images_dir: str | Path, class_names: Sequence[str] | None = None
    ) -> None:
        """Registers classes and images from parsed COCO JSON; files live in `images_dir`.

        Args:
            coco: dict with "images", "annotations" and "categories" lists.
            images_dir: folder holding each image's `file_name`.
            class_names: expected category names in category-id order (without "BG").
        """
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco.get(key), list):
                raise InvalidInput(f"COCO JSON needs a list under {key!r}")
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        _check_class_names([c["name"] for c in categories], class_names)
        for image in coco["images"]:
            _check_image_entry(image)
        annotations = _group_annotations(coco, {c["id"] for c in categories})
        for category in categories:
            self.add_class(self.source, int(category["id"]), category["name"])
        for image in coco["images"]:
            self.add_image(
                self.source,
                image_id=image["id"],
                path=Path(images_dir) / image["file_name"],
                file_name=image["file_name"],
                height=int(image["height"]),
                width=int(image["width"]),
                annotations=annotations[image["id"]],
            )

    @classmethod
    def from_coco_dict(
        cls, coco: dict, images_dir: str | Path, class_names: Sequence[str] | None = None
    ) -> CocoDataset:
        """Builds a prepared dataset from parsed COCO JSON (see `load_coco_dict`)."""
        dataset = cls()
        dataset.load_coco_dict(coco, images_dir, class_names)
        dataset.prepare()
        return dataset

    def image_reference(self, image_id: int) -> str:
        """Returns the image's file name."""
        return self.image_info[image_id]["file_name"]

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Decodes the image's annotations.

        Returns:
            masks: bool [H, W, N], each instance contiguous in memory (Fortran order).
            class_ids: int32 [N]; negative for crowd regions.
        """
        info = self.image_info[image_id]
        height, width = info["height"], info["width"]
        rles, class_ids = [], []
        for ann in info["annotations"]:
            rle = annotation_to_rle(ann, height, width)
            if rle is None:
                continue
            class_id = self.map_source_class_id(f"{self.source}.{ann['category_id']}")
            rles.append(rle)
            class_ids.append(-class_id if ann.get("iscrowd") else class_id)
        if not rles:
            return np.zeros([height, width, 0], dtype=bool), np.zeros([0], dtype=np.int32)
        # One decode call for all instances: per-instance masks stacked along the last axis
        # cost seconds on images with hundreds of instances.
        masks = _decode(rles)
        present = masks.any(axis=(0, 1))
        class_ids = np.array(class_ids, dtype=np.int32)
        if not present.all():
            masks, class_ids = masks[:, :, present], class_ids[present]
        if not masks.shape[2]:
            return np.zeros([height, width, 0], dtype=bool), np.zeros([0], dtype=np.int32)
        return masks, class_ids


def _check_class_names(file_names: list[str], class_names: Sequence[str] | None) -> None:
    """Raises ValueError when expected class names differ from the file's categories."""
    if class_names is not None and list(class_names) != file_names:
        raise InvalidInput(
            f"class_names {list(class_names)} differ from the annotation file's categories "
            f"(in id order) {file_names}"
        )


def _check_image_entry(image: dict) -> None:
    """Raises ValueError when a COCO "images" entry lacks a needed key."""
    missing = [k for k in ("id", "file_name", "height", "width") if k not in image]
    if missing:
        raise InvalidInput(f"COCO image entry {image} lacks {missing}")


def _group_annotations(coco: dict, category_ids: set[int]) -> dict[Any, list[dict]]:
    """Returns each image id's annotations, checking their image and category ids."""
    grouped: dict[Any, list[dict]] = {image["id"]: [] for image in coco["images"]}
    for ann in coco["annotations"]:
        name = f"Annotation {ann.get('id')}"
        if ann.get("image_id") not in grouped:
            raise InvalidInput(f"{name} refers to unknown image {ann.get('image_id')}")
        if ann.get("category_id") not in category_ids:
            raise InvalidInput(f"{name} has unknown category {ann.get('category_id')}")
        grouped[ann["image_id"]].append(ann)
    return grouped


def annotation_to_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """Decodes one COCO annotation's segmentation to a bool [H, W] mask.

    Args:
        ann: COCO annotation with "segmentation" as polygons, uncompressed or compressed RLE.
        height: the image's height in pixels.
        width: the image's width in pixels.
    """
    rle = annotation_to_rle(ann, height, width)
    if rle is None:
        return np.zeros([height, width], dtype=bool)
    return _decode([rle])[:, :, 0]


def annotation_to_rle(ann: dict, height: int, width: int) -> dict | None:
    """One COCO annotation's segmentation as compressed RLE (None for an empty polygon list).

    Raises:
        ValueError: no polygon or RLE segmentation, or an RLE of another size than the image.
    """
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width)) if segm else None
    elif isinstance(segm, dict) and "counts" in segm:
        # Uncompressed RLE has a list of counts; compressed RLE is already what decode takes.
        is_uncompressed = isinstance(segm["counts"], list)
        rle = mask_utils.frPyObjects(segm, height, width) if is_uncompressed else segm
    else:
        raise InvalidInput(f"Annotation {ann.get('id')} has no polygon or RLE segmentation")
    if rle is not None and [int(v) for v in rle.get("size", ())] != [height, width]:
        size = rle.get("size") or ("?", "?")
        raise InvalidInput(
            f"Annotation {ann.get('id')} mask is {size[0]}x{size[1]}, image is {height}x{width}"
        )
    return rle


def _decode(rles: list[dict]) -> np.ndarray:
    """Compressed RLEs of one size → bool [H, W, N] in Fortran order (pycocotools' layout)."""
    with warnings.catch_warnings():
        # pycocotools' decode trips NumPy 2's __array__(copy=...) deprecation; the result is fine.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        # decode writes 0/1 bytes, which are valid bools: a view, not a copy.
        return mask_utils.decode(rles).view(bool)
