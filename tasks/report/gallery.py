"""The report's gallery: the day's images most worth a look, as small inline thumbnails.

Half the places go to the images whose class shares lie furthest from the window (robust z,
the review's ``area-outlier`` ranking), half to the least confident (lowest detection
score); the rest of either list fills what the other leaves. Each thumbnail is the overlay
batch inference drew (or the image itself without overlays), linked to the full overlay.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import posixpath

import PIL.Image

from tasks.report.history import History
from tasks.review.selection import allocate
from tasks.review.strategies import Pick, area_outliers, low_confidence

THUMBNAIL = 240  # px, the longer side


@dataclasses.dataclass(frozen=True)
class GalleryItem:
    """One picture: the image, why it is shown, the thumbnail, the full overlay's link."""

    image_uri: str
    reason: str
    thumbnail: str  # data: URI
    link: str | None


def choose(history: History, count: int, window_days: int) -> list[Pick]:
    """Up to ``count`` of the report day's images, outliers and low scores in turns."""
    scores = history.scores
    today_scores = scores[scores["run_date"] == history.day] if len(scores) else scores
    picks = {
        "area-outlier": area_outliers(history.today, history.window, 0.0, window_days),
        "low-confidence": low_confidence(today_scores, (0.0, 1.0)) if len(today_scores) else [],
    }
    return [item.reasons[0] for item in allocate(picks, count)] if count else []


def overlay_name(image_uri: str, overlays: list[str]) -> str | None:
    """The overlay drawn for an image: the listed name whose path, without its extension,
    ends the image's URI without its extension (the longest such)."""
    stem = posixpath.splitext(image_uri)[0]
    matches = [name for name in overlays if stem.endswith("/" + posixpath.splitext(name)[0])]
    return max(matches, key=len) if matches else None


def thumbnail(data: bytes) -> str:
    """A JPEG thumbnail of the image bytes as a ``data:`` URI."""
    with PIL.Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB")
        small.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
