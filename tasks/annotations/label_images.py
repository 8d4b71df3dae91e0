"""Instance label images beside their images (Cellpose, StarDist, one folder per sample) to
image records.

A label image has one integer per pixel: 0 is background, each other value one instance
(8-bit or 16-bit PNG; 8, 16 or 32-bit integer TIFF). Each label image is one item; its image
is found by name, in the first of these layouts whose rule its path meets:

* StarDist: ``<dir>/masks/<x>.<ext>`` -> image ``<dir>/images/<x>.*``, class image
  ``<dir>/classes/<x>.*``;
* Cellpose: ``<x>_masks.<ext>`` or ``<x>_cp_masks.<ext>`` -> image ``<x>.*`` beside it, class
  image ``<x>_classes.*``;
* a folder per sample: ``<sample>/labels.<ext>`` -> image ``<sample>/image.*``, class image
  ``<sample>/classes.*``.

``<ext>`` is ``png``, ``tif`` or ``tiff``; ``*`` tries the label image's own suffix first
(StarDist names both files alike), then ``.tif .tiff .png .jpg .jpeg .bmp``, then the same in
upper case.

Classes: without a class image every instance has the class ``class_name`` (``--class``,
default ``object``). A class image is a second label image of the same size whose values are
classes (0 none): an instance's label is the value most of its pixels have there, among those
that have one (the smaller on a tie), as a number, e.g. ``"2"``; ``--alias 2=mitochondrion``
or a labels file name it. An instance without any classed pixel is dropped.

Skipped, with the reason: an unreadable label image or one that is not one channel of
integers, a missing or unreadable image, a size other than the image's, an unreadable class
image or one of another size. A label image without a non-zero pixel is an image without
objects. Labels are drawn on the image as stored; an image with an EXIF orientation is written
upright and its labels turned with it.
"""

from __future__ import annotations

import posixpath

import numpy as np

from .formats import CLASS_OPTION, DEFAULT_CLASS, AnnotationFormat
from .images import exif_orientation, image_size, turn_upright, upright_image
from .paths import parent_of
from .pixels import label_crops, label_pixels
from .records import Fetch, ImageRecord, Instance, Issue, IssueKind, ReadResult

LABEL_SUFFIXES = (".png", ".tif", ".tiff")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
CELLPOSE_MASKS = ("_cp_masks", "_masks")  # the longer first: x_cp_masks belongs to x
CELLPOSE_CLASSES = "_classes"
STARDIST_FOLDERS = ("masks", "images", "classes")  # labels, images, class images
SAMPLE_NAMES = ("labels", "image", "classes")  # the same, in a folder per sample


def read_label_images(
    name: str, data: bytes, fetch: Fetch, class_name: str = DEFAULT_CLASS
) -> ReadResult:
    """Convert one instance label image and its image.

    Args:
        name: path of the label image relative to the input root.
        data: its bytes.
        fetch: reads a file relative to the input root (the image and the class image).
        class_name: the class of every instance when there is no class image.

    Returns:
        One item: the image with its instances, or a SKIPPED issue saying why not.
    """
    result = ReadResult(items=1)
    try:
        labels = label_pixels(data, name)
        image_stem, class_stem = partner_stems(name)
        image_path, content = _find(fetch, image_stem, name, IMAGE_SUFFIXES)
        height, width = image_size(content, image_path)
        if labels.shape != (height, width):
            raise ValueError(
                f"label image is {labels.shape[1]}x{labels.shape[0]} but image "
                f"{image_path!r} is {width}x{height}"
            )
        classes = _class_image(fetch, class_stem, name, labels.shape)
        upright_height, upright_width, upright = upright_image(content, image_path)
    except ValueError as error:
        result.skip(name, str(error))
        return result
    orientation = exif_orientation(content)
    labels = turn_upright(labels, orientation)
    classes = None if classes is None else turn_upright(classes, orientation)
    instances = []
    for value, mask, (top, left) in label_crops(labels):
        item = f"value {value}"
        label = class_name
        if classes is not None:
            label = _majority_class(
                classes[top : top + mask.shape[0], left : left + mask.shape[1]], mask
            )
            if label is None:
                result.issues.append(
                    Issue(
                        IssueKind.DROPPED,
                        name,
                        "no pixel of it has a class in the class image",
                        item,
                    )
                )
                continue
        instances.append(Instance(label, mask, origin=f"{item} ({label})", offset=(top, left)))
    result.images.append(
        ImageRecord(image_path, name, upright_height, upright_width, tuple(instances), upright)
    )
    return result


def partner_stems(name: str) -> tuple[str, str]:
    """The image's and the class image's paths without suffix, for a label image's path.

    Raises:
        ValueError: the path meets no layout's rule.
    """
    folder, file_name = parent_of(name), posixpath.basename(name)
    stem = posixpath.splitext(file_name)[0]
    if posixpath.basename(folder) == STARDIST_FOLDERS[0]:
        parent = parent_of(folder)
        return tuple(_join(parent, f"{sub}/{stem}") for sub in STARDIST_FOLDERS[1:])
    for suffix in CELLPOSE_MASKS:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            base = stem[: -len(suffix)]
            return _join(folder, base), _join(folder, base + CELLPOSE_CLASSES)
    if stem == SAMPLE_NAMES[0]:
        return tuple(_join(folder, sample_name) for sample_name in SAMPLE_NAMES[1:])
    raise ValueError(
        f"{name!r} is not a label image of a known layout (masks/<x>, <x>_masks, <sample>/labels)"
    )


def is_label_image(relative: str) -> bool:
    """Whether a file is a label image of one of the layouts (see the module docstring)."""
    if not relative.lower().endswith(LABEL_SUFFIXES):
        return False
    try:
        partner_stems(relative)
    except ValueError:
        return False
    return True


def _join(folder: str, relative: str) -> str:
    return f"{folder}/{relative}" if folder else relative


def _find(fetch: Fetch, stem: str, label_name: str, suffixes: tuple[str, ...]) -> tuple[str, bytes]:
    """The file ``<stem>.*``: the label image's own suffix first, then ``suffixes`` in order,
    then in upper case.

    Raises:
        ValueError: none exists, naming what was looked for.
    """
    own = posixpath.splitext(label_name)[1]
    candidates = dict.fromkeys([own, *suffixes, *(suffix.upper() for suffix in suffixes)])
    for suffix in candidates:
        try:
            return stem + suffix, fetch(stem + suffix)
        except FileNotFoundError:
            continue
    raise ValueError(f"image {stem}.* not found (tried {' '.join(candidates)})")


def _class_image(
    fetch: Fetch, stem: str, label_name: str, shape: tuple[int, ...]
) -> np.ndarray | None:
    """The class image's values ``[H, W]``, or None when there is none."""
    try:
        path, data = _find(fetch, stem, label_name, LABEL_SUFFIXES)
    except ValueError:
        return None
    classes = label_pixels(data, path, what=f"class image {path!r}")
    if classes.shape != shape:
        raise ValueError(
            f"class image {path!r} is {classes.shape[1]}x{classes.shape[0]} but "
            f"the label image is {shape[1]}x{shape[0]}"
        )
    return classes


def _majority_class(classes: np.ndarray, mask: np.ndarray) -> str | None:
    """The class value most of the mask's classed pixels have (the smaller on a tie)."""
    values, counts = np.unique(classes[mask], return_counts=True)
    classed = values > 0
    if not classed.any():
        return None
    return str(int(values[classed][np.argmax(counts[classed])]))


FORMAT = AnnotationFormat(
    "label-images",
    "instance label images beside their images (Cellpose x_masks, StarDist "
    "masks/, <sample>/labels + image)",
    "masks/<x>.png|tif, <x>_masks.png|tif, <sample>/labels.png|tif",
    is_label_image,
    read_label_images,
    options=(CLASS_OPTION,),
)
