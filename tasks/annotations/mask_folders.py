"""Folders of binary masks, one folder per image (the Kaggle Data Science Bowl 2018 layout,
which matterport's ``samples/nucleus`` reads), to image records.

Layout, each sample folder anywhere below the input root::

    <sample>/images/<sample>.<ext>       the image: PNG, TIFF, JPEG or BMP
    <sample>/masks/<name>.png            one binary mask per instance, the image's size
    <sample>/masks/<class>/<name>.png    or: the sub-folder names the instance's class

A mask pixel belongs to the instance when its value is not 0 (0/255 and 0/1 masks alike;
masks may also be TIFF). A mask directly in ``masks/`` has the class ``class_name``
(``--class``, default ``object``). Masks may overlap (the nuclei of the Data Science Bowl
share a pixel here and there): each instance keeps its whole mask, as matterport's sample
loads them, so a shared pixel belongs to both instances and counts once in the class's area,
which is the union of its masks.

One sample is one item. Skipped, with the reason: no image in ``images/``, several and none
named after the sample, an unreadable image, no mask at all (an unannotated sample cannot be
told from one without objects). Dropped, the image converting without that instance: an
unreadable mask, one of another size than the image, an empty one, a file in ``masks/`` that
is not PNG or TIFF, one nested below ``masks/<class>/``. Files whose name starts with a dot are
passed over. Masks are drawn on the image as stored; an image with an EXIF orientation is
written upright and its masks turned with it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from .formats import CLASS_OPTION, DEFAULT_CLASS, AnnotationFormat
from .images import exif_orientation, fetch_image, turn_upright, upright_image
from .paths import stem_of
from .pixels import crop, mask_pixels
from .records import Fetch, ImageRecord, Instance, Issue, IssueKind, ReadResult

IMAGES_FOLDER = "images"
MASKS_FOLDER = "masks"
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
MASK_SUFFIXES = (".png", ".tif", ".tiff")


def read_mask_folders(
    folder: str, files: Sequence[str], fetch: Fetch, class_name: str = DEFAULT_CLASS
) -> ReadResult:
    """Convert one sample folder.

    Args:
        folder: the sample folder, relative to the input root.
        files: every file below it, relative to the input root.
        fetch: reads a file relative to the input root.
        class_name: the class of masks directly in ``masks/``.

    Returns:
        One item: the image with its instances, or a SKIPPED issue saying why not.
    """
    result = ReadResult(items=1)
    images, masks = _image_and_mask_files(folder, files, result)
    try:
        image_path = _the_image(folder, images)
        if not masks:
            raise ValueError(f"no mask in {MASKS_FOLDER}/ (*.png, *.tif, *.tiff)")
        content = fetch_image(fetch, image_path, folder)
        height, width, upright = upright_image(content, image_path)
        orientation = exif_orientation(content)
    except ValueError as error:
        result.skip(folder, str(error))
        return result
    stored = (width, height) if orientation >= 5 else (height, width)  # 5-8 swap the axes
    instances = []
    for path, label in masks:
        item = f"mask {posixpath.relpath(path, folder)}"
        try:
            mask = mask_pixels(fetch(path), "mask")
            if mask.shape != stored:
                raise ValueError(
                    f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                    f"{stored[1]}x{stored[0]}"
                )
        except (ValueError, FileNotFoundError) as error:
            result.issues.append(Issue(IssueKind.DROPPED, folder, str(error), item))
            continue
        cropped = crop(turn_upright(mask, orientation))
        if cropped is None:
            result.issues.append(
                Issue(IssueKind.DROPPED, folder, "empty mask (no pixel set)", item)
            )
            continue
        instances.append(Instance(label or class_name, cropped[0], origin=item, offset=cropped[1]))
    result.images.append(ImageRecord(image_path, folder, height, width, tuple(instances), upright))
    return result


def sample_of(relative: str) -> str | None:
    """The sample folder a file belongs to: ``<sample>/images/<file>``,
    ``<sample>/masks/<file>`` or ``<sample>/masks/<class>/<file>``; None otherwise."""
    parts = relative.split("/")
    if parts[-1].startswith("."):
        return None
    if len(parts) >= 4 and parts[-3] == MASKS_FOLDER:
        return "/".join(parts[:-3])
    if len(parts) >= 3 and parts[-2] in (IMAGES_FOLDER, MASKS_FOLDER):
        return "/".join(parts[:-2])
    return None


def _image_and_mask_files(
    folder: str, files: Sequence[str], result: ReadResult
) -> tuple[list[str], list[tuple[str, str | None]]]:
    """The image candidates and ``(mask path, label)`` of a sample; other files in ``masks/``
    are DROPPED issues."""
    images, masks = [], []
    for path in sorted(files):
        parts = posixpath.relpath(path, folder).split("/")
        if parts[-1].startswith("."):
            continue
        if parts[0] == IMAGES_FOLDER and len(parts) == 2:
            if path.lower().endswith(IMAGE_SUFFIXES):
                images.append(path)
        elif parts[0] == MASKS_FOLDER and len(parts) > 1:
            item = f"mask {'/'.join(parts)}"
            if len(parts) > 3:
                result.issues.append(
                    Issue(
                        IssueKind.DROPPED,
                        folder,
                        f"nested below {MASKS_FOLDER}/<class>/; not read",
                        item,
                    )
                )
            elif not path.lower().endswith(MASK_SUFFIXES):
                result.issues.append(
                    Issue(IssueKind.DROPPED, folder, "not a PNG or TIFF mask", item)
                )
            else:
                masks.append((path, parts[1] if len(parts) == 3 else None))
    return images, masks


def _the_image(folder: str, images: list[str]) -> str:
    """``images/<sample>.<ext>``, or the only image there."""
    if not images:
        raise ValueError(f"no image in {IMAGES_FOLDER}/ ({', '.join(IMAGE_SUFFIXES)})")
    named = [path for path in images if stem_of(path) == posixpath.basename(folder)]
    if named:
        return named[0]
    if len(images) == 1:
        return images[0]
    raise ValueError(
        f"{len(images)} images in {IMAGES_FOLDER}/ and none named after the "
        f"sample ({posixpath.basename(folder)}.*)"
    )


def _in_a_sample(relative: str) -> bool:
    return sample_of(relative) is not None


FORMAT = AnnotationFormat(
    "mask-folders",
    "a folder per image: images/<id>.<ext> and masks/*.png, one binary mask "
    "per instance (Kaggle DSB 2018, matterport nucleus)",
    f"<sample>/{IMAGES_FOLDER}/*, <sample>/{MASKS_FOLDER}/*.png",
    _in_a_sample,
    read_mask_folders,
    options=(CLASS_OPTION,),
    folder_of=sample_of,
)
