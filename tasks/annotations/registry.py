"""Every annotation format ``convert`` reads, one registration line each.

A new format is a reader module declaring its ``FORMAT`` (``tasks.annotations.formats``) and
one line in ``FORMATS`` below; the CLI, the flow and the source search take it from here.
"""

from __future__ import annotations

from tasks.failures import InvalidSetting

from . import coco, cvat, label_images, label_studio, labelme, legacy, mask_folders, via, yolo
from .formats import AnnotationFormat, ReaderOption

FORMATS: tuple[AnnotationFormat, ...] = (
    labelme.FORMAT,
    legacy.FORMAT,
    via.FORMAT,
    coco.FORMAT,
    cvat.FORMAT,
    label_studio.FORMAT,
    yolo.FORMAT,
    mask_folders.FORMAT,
    label_images.FORMAT,
)
NAMES: tuple[str, ...] = tuple(fmt.name for fmt in FORMATS)


def get_format(name: str) -> AnnotationFormat:
    """The format registered as ``name``.

    Raises:
        ValueError: no such format, naming the registered ones.
    """
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise InvalidSetting(f"unknown annotation format {name!r} (one of {', '.join(NAMES)})")


def all_options() -> tuple[ReaderOption, ...]:
    """Every format option once, in registration order (formats sharing a flag share it).

    Raises:
        ValueError: two different options with one flag, or one name (a registration error).
    """
    by_flag: dict[str, ReaderOption] = {}
    for option in (option for fmt in FORMATS for option in fmt.options):
        if by_flag.setdefault(option.flag, option) != option:
            raise ValueError(f"two different format options use the flag {option.flag}")
    names = [option.name for option in by_flag.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"two different format options share a name among {names}")
    return tuple(by_flag.values())


def formats_taking(option: ReaderOption) -> tuple[str, ...]:
    """The names of the formats that take ``option``."""
    return tuple(fmt.name for fmt in FORMATS if option in fmt.options)
