"""Relative paths inside the input root, normalised and confined to it."""

from __future__ import annotations

import posixpath
import re

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVE = re.compile(r"^[A-Za-z]:")


def resolve_inside(folder: str, reference: str) -> str:
    """Resolve a path written in an annotation file against the file's folder.

    Windows separators (labelme on Windows writes ``..\\images\\a.jpg``) become ``/``.

    Args:
        folder: folder of the annotation file, relative to the input root ("" for the root).
        reference: the path as written, e.g. ``imagePath`` or a VIA ``filename``.

    Returns:
        The normalised path relative to the input root, e.g. ``images/a.jpg``.

    Raises:
        ValueError: for an empty, absolute or URL path, or one that leaves the input root
            (``../../etc/passwd``).
    """
    text = reference.replace("\\", "/")
    if not text.strip():
        raise ValueError("empty image path")
    if text.startswith("/") or _DRIVE.match(text) or _SCHEME.match(text):
        raise ValueError(
            f"image path {reference!r} is absolute; it must be relative to the "
            "annotation file and inside the input folder"
        )
    resolved = posixpath.normpath(posixpath.join(folder, text))
    if resolved == ".." or resolved.startswith("../") or resolved == ".":
        raise ValueError(f"image path {reference!r} points outside the input folder")
    return resolved


def parent_of(relative: str) -> str:
    """Folder part of a relative path ("" at the root)."""
    return posixpath.dirname(relative)


def stem_of(relative: str) -> str:
    """File name without folder and last suffix."""
    return posixpath.splitext(posixpath.basename(relative))[0]
