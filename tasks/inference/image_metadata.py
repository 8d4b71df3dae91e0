"""What the ``images`` table records about one image: EXIF capture time and position, path fields.

Pure functions of what a shard already holds (the file's bytes, its listing, the decoded size):
nothing here reads storage or needs Prefect, and nothing here fails an image. EXIF that is
missing, cut short or holds nonsense gives nulls; the image is still processed.

- ``captured_at``: EXIF ``DateTimeOriginal`` (Exif IFD ``0x8769``), with
  ``SubsecTimeOriginal`` as fractions of a second and ``OffsetTimeOriginal`` (``+02:00``) as
  the zone. Cameras write local wall-clock time; without a (valid) offset the time is taken as
  UTC, which may be off by the camera's zone.
- ``gps_latitude``/``gps_longitude``: decimal degrees from the GPS IFD (``0x8825``), south and
  west negative. Both are null unless both values and their ``N``/``S``, ``E``/``W``
  references are present and in range (half a position is no position).
- ``path_fields``: hive-style ``key=value`` folders of the path below the input folder
  (``site=a/cam=3/x.jpg``), plus the named groups of an optional regular expression
  (``re.search`` on that path); a group wins over a folder of the same name.

PNG keeps EXIF in an ``eXIf`` chunk; one placed after the pixel data is not read (Pillow
would decode every pixel again to find it).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import math
import re
import urllib.parse
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import PIL.Image

from tasks.failures import InvalidSetting
from tasks.parquet_schemas import ImageRow, RunStamp

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
DATE_TIME_ORIGINAL = 0x9003
OFFSET_TIME_ORIGINAL = 0x9011
SUBSEC_TIME_ORIGINAL = 0x9291
GPS_LATITUDE_REF, GPS_LATITUDE, GPS_LONGITUDE_REF, GPS_LONGITUDE = 1, 2, 3, 4

# "2024:05:01 10:20:30" as the standard says; "-" and "T" as some writers do.
_DATE_TIME = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class ExifFacts:
    """What the ``images`` table takes from EXIF; None where the file does not say."""

    captured_at: datetime.datetime | None = None  # timezone-aware, UTC
    gps_latitude: float | None = None
    gps_longitude: float | None = None


def image_row(
    uri: str,
    relative: str,
    fingerprint: str,
    data: bytes,
    width: int,
    height: int,
    stamp: RunStamp,
    path_pattern: str | None = None,
) -> ImageRow:
    """One ``images`` row.

    Args:
        uri: the image's URI.
        relative: its path below the input folder (``/``-separated).
        fingerprint: its listing fingerprint, the one the index records.
        data: the file's bytes, as read for decoding.
        width, height: the decoded size, after EXIF orientation.
        stamp: the model and run that write the row.
        path_pattern: optional regular expression with named groups (see :func:`path_fields`).
    """
    exif = read_exif(data)
    return ImageRow(
        image_uri=uri,
        image_width=width,
        image_height=height,
        bytes=len(data),
        fingerprint=fingerprint,
        captured_at=exif.captured_at,
        gps_latitude=exif.gps_latitude,
        gps_longitude=exif.gps_longitude,
        path_fields=path_fields(relative, path_pattern),
        model_version=stamp.model_version,
        run_id=stamp.run_id,
    )


def read_exif(data: bytes) -> ExifFacts:
    """Capture time and position from an image file's EXIF; never raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": we answer with nulls
            with PIL.Image.open(io.BytesIO(data)) as image:  # the header only, no pixels
                # PngImageFile.getexif() would decode every pixel to look past them.
                if image.format == "PNG" and "exif" not in image.info:
                    return ExifFacts()
                # Read while the file is open: TIFF's IFDs are parsed from it on demand.
                exif = image.getexif()
                position = _safely(_position, exif) or (None, None)
                return ExifFacts(_safely(_captured_at, exif), *position)
    except Exception:  # any parser error (a bomb beyond Pillow's own limit too): no EXIF
        return ExifFacts()


def compile_path_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """Check a ``path_pattern`` before any work: it compiles and names at least one group.

    Raises:
        ValueError: not a regular expression, or one without ``(?P<name>...)`` groups (it
            could add no field).
    """
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise InvalidSetting(
            f"path_pattern {pattern!r} is not a valid regular expression: {error}"
        ) from None
    if not compiled.groupindex:
        raise InvalidSetting(
            f"path_pattern {pattern!r} has no named group; name each field as "
            r"(?P<site>[^/]+)"
        )
    return compiled


def path_fields(relative: str, pattern: str | re.Pattern[str] | None = None) -> dict[str, str]:
    """Fields of an image's path below the input folder.

    Args:
        relative: ``/``-separated path below the input folder, file name included.
        pattern: optional regular expression; its named groups that matched (``re.search``)
            are added and win over folder fields of the same name.

    Returns:
        Hive-style folders first (``site=a/day=2024-05-01/x.jpg`` gives ``{"site": "a",
        "day": "2024-05-01"}``; ``%XX`` escapes decoded as hive writers encode them), in
        path order; then the pattern's groups.
    """
    fields: dict[str, str] = {}
    for folder in relative.split("/")[:-1]:  # the file name is no partition
        key, equals, value = folder.partition("=")
        if equals and key:
            fields[urllib.parse.unquote(key)] = urllib.parse.unquote(value)
    if pattern is not None:
        match = re.search(pattern, relative)  # re caches compiled patterns
        if match is not None:
            fields.update((k, v) for k, v in match.groupdict().items() if v is not None)
    return fields


def _safely(read: Callable[[PIL.Image.Exif], _T | None], exif: PIL.Image.Exif) -> _T | None:
    """One field's reader; a garbled value (any exception) is a null, not a failed image."""
    try:
        return read(exif)
    except Exception:
        return None


def _captured_at(exif: PIL.Image.Exif) -> datetime.datetime | None:
    tags = exif.get_ifd(EXIF_IFD)
    match = _DATE_TIME.fullmatch(_text(tags.get(DATE_TIME_ORIGINAL)) or "")
    if match is None:  # absent, blank ("    :  :  ") or not a date
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    subsec = _text(tags.get(SUBSEC_TIME_ORIGINAL)) or ""
    micro = int(subsec[:6].ljust(6, "0")) if subsec.isdigit() else 0
    zone = _zone(_text(tags.get(OFFSET_TIME_ORIGINAL))) or datetime.timezone.utc
    local = datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    return local.astimezone(datetime.timezone.utc)


def _zone(offset: str | None) -> datetime.timezone | None:
    """``+02:00`` / ``-0530`` as a zone; None for anything else (then the time is UTC)."""
    match = _OFFSET.fullmatch(offset or "")
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = datetime.timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= datetime.timedelta(hours=24):
        return None
    return datetime.timezone(-delta if sign == "-" else delta)


def _position(exif: PIL.Image.Exif) -> tuple[float, float] | None:
    tags = exif.get_ifd(GPS_IFD)
    latitude = _signed(tags.get(GPS_LATITUDE), tags.get(GPS_LATITUDE_REF), "N", "S", 90.0)
    longitude = _signed(tags.get(GPS_LONGITUDE), tags.get(GPS_LONGITUDE_REF), "E", "W", 180.0)
    if latitude is None or longitude is None:
        return None
    return latitude, longitude


def _signed(value: Any, reference: Any, positive: str, negative: str, limit: float) -> float | None:
    """Degrees, minutes, seconds and a hemisphere letter as signed decimal degrees."""
    hemisphere = (_text(reference) or "").upper()
    if hemisphere not in (positive, negative) or value is None:
        return None  # without its reference the sign is unknown
    parts = [float(part) for part in (value if isinstance(value, tuple | list) else (value,))]
    if not 1 <= len(parts) <= 3 or not all(math.isfinite(p) and p >= 0 for p in parts):
        return None  # e.g. a zero denominator reads as nan
    degrees = sum(part / 60.0**power for power, part in enumerate(parts))
    if degrees > limit:
        return None
    return -degrees if hemisphere == negative else degrees


def _text(value: Any) -> str | None:
    """An ASCII EXIF value as text, NUL padding and blanks stripped; None if not text."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    return value.strip("\x00 \t\r\n") or None
