"""The ``images`` row's facts: EXIF capture time and GPS written with Pillow's EXIF API, garbled
EXIF as nulls, hive-style folders and ``path_pattern`` groups."""

from __future__ import annotations

import datetime
import io

import pytest
from PIL import Image, TiffImagePlugin

from tasks.inference.image_metadata import (
    DATE_TIME_ORIGINAL,
    EXIF_IFD,
    GPS_IFD,
    OFFSET_TIME_ORIGINAL,
    SUBSEC_TIME_ORIGINAL,
    ExifFacts,
    compile_path_pattern,
    image_row,
    path_fields,
    read_exif,
)
from tasks.parquet_schemas import ImageRow, RunStamp, rows_to_table

UTC = datetime.timezone.utc


def with_exif(exif: Image.Exif | bytes | None, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    options = {} if exif is None else {"exif": exif}
    Image.new("RGB", (12, 8), (10, 200, 30)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def exif_of(
    taken: dict[int, object] | None = None, gps: dict[int, object] | None = None
) -> Image.Exif:
    exif = Image.Exif()
    if taken is not None:
        exif[EXIF_IFD] = taken
    if gps is not None:
        exif[GPS_IFD] = gps
    return exif


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_capture_time_with_an_offset_is_converted_to_utc(fmt: str):
    exif = exif_of(
        {
            DATE_TIME_ORIGINAL: "2024:05:01 10:20:30",
            OFFSET_TIME_ORIGINAL: "+02:00",
            SUBSEC_TIME_ORIGINAL: "25",
        }
    )
    facts = read_exif(with_exif(exif, fmt))
    assert facts.captured_at == datetime.datetime(2024, 5, 1, 8, 20, 30, 250000, tzinfo=UTC)
    west = exif_of({DATE_TIME_ORIGINAL: "2024:05:01 22:00:00", OFFSET_TIME_ORIGINAL: "-05:30"})
    assert read_exif(with_exif(west, fmt)).captured_at == datetime.datetime(
        2024, 5, 2, 3, 30, tzinfo=UTC
    )


def test_capture_time_without_an_offset_is_taken_as_utc():
    facts = read_exif(with_exif(exif_of({DATE_TIME_ORIGINAL: "2024:05:01 10:20:30"})))
    assert facts == ExifFacts(datetime.datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC), None, None)
    garbled_offset = exif_of(
        {DATE_TIME_ORIGINAL: "2024:05:01 10:20:30", OFFSET_TIME_ORIGINAL: "local"}
    )
    assert read_exif(with_exif(garbled_offset)).captured_at == facts.captured_at


def test_gps_north_east_and_south_west_in_decimal_degrees():
    north_east = exif_of(gps={1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    facts = read_exif(with_exif(north_east))
    assert facts.gps_latitude == pytest.approx(52 + 31 / 60 + 12 / 3600)
    assert facts.gps_longitude == pytest.approx(13 + 24 / 60 + 36 / 3600)
    assert facts.captured_at is None
    south_west = exif_of(gps={1: "S", 2: (33.0, 51.0, 54.0), 3: "W", 4: (151.0, 12.0, 36.0)})
    facts = read_exif(with_exif(south_west))
    assert facts.gps_latitude == pytest.approx(-(33 + 51 / 60 + 54 / 3600))
    assert facts.gps_longitude == pytest.approx(-(151 + 12 / 60 + 36 / 3600))
    decimal = exif_of(gps={1: "N", 2: (1.5,), 3: "W", 4: (2.0, 30.0)})  # fewer parts
    assert read_exif(with_exif(decimal)) == ExifFacts(None, 1.5, -2.5)


@pytest.mark.parametrize(
    "taken, gps",
    [
        ({DATE_TIME_ORIGINAL: "garbage"}, {1: "Q", 2: (1.0, 2.0, 3.0), 3: "E", 4: (1.0, 2.0, 3.0)}),
        (
            {DATE_TIME_ORIGINAL: "    :  :     :  :  "},  # "unknown", as the standard writes it
            {1: "N", 2: (TiffImagePlugin.IFDRational(1, 0), 0.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0)},
        ),
        (
            {DATE_TIME_ORIGINAL: "2024:13:45 25:61:00"},
            {1: "N", 2: (1.0, 0.0, 0.0), 3: "E", 4: (200.0, 0.0, 0.0)},
        ),  # out of range
        ({DATE_TIME_ORIGINAL: b"\xff\xfe2024:05:01"}, {2: (1.0, 0.0, 0.0), 4: (1.0, 0.0, 0.0)}),
    ],
)
def test_garbled_exif_values_are_nulls(taken: dict, gps: dict):
    assert read_exif(with_exif(exif_of(taken, gps))) == ExifFacts()
    # One garbled field does not take the others with it.
    good_gps = {1: "N", 2: (1.0, 0.0, 0.0), 3: "E", 4: (2.0, 0.0, 0.0)}
    assert read_exif(with_exif(exif_of(taken, good_gps))) == ExifFacts(None, 1.0, 2.0)


@pytest.mark.parametrize(
    "payload",
    [
        b"Exif\x00\x00garbage",
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\x01\x02",  # an IFD cut short
        # an Exif IFD pointer far past the end of the data
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00"
        b"\x69\x87\x04\x00\x01\x00\x00\x00\xff\xff\x00\x00",
    ],
)
def test_broken_exif_blocks_and_files_without_exif_give_nulls(payload: bytes):
    assert read_exif(with_exif(payload)) == ExifFacts()
    for fmt in ("JPEG", "PNG", "BMP", "TIFF"):
        assert read_exif(with_exif(None, fmt)) == ExifFacts()
    assert read_exif(b"not an image") == ExifFacts() == read_exif(b"")


def test_hive_style_folders_become_fields():
    assert path_fields("site=a/day=2024-05-01/x.jpg") == {"site": "a", "day": "2024-05-01"}
    assert path_fields("incoming/site=a%2Fb/cam=/x=1.jpg") == {"site": "a/b", "cam": ""}
    assert path_fields("x.jpg") == {} == path_fields("a/b/=c/x.jpg")


def test_pattern_groups_are_added_and_win_over_folders():
    pattern = r"(?P<site>[^/]+)/(?P<camera>cam\d+)/"
    assert path_fields("north/cam07/2024/x.jpg", pattern) == {"site": "north", "camera": "cam07"}
    assert path_fields("zone=3/north/cam07/x.jpg", pattern) == {
        "zone": "3",
        "site": "north",
        "camera": "cam07",
    }
    assert path_fields("site=a/cam01/x.jpg", r"site=(?P<site>\w)\w*/") == {"site": "a"}
    assert path_fields("site=abc/cam01/x.jpg", r"(?P<site>cam)\d") == {"site": "cam"}  # wins
    optional = r"(?P<site>[a-z]+)/(?:(?P<camera>cam\d+)/)?"
    assert path_fields("north/x.jpg", optional) == {"site": "north"}  # unmatched group: absent


def test_a_pattern_that_does_not_match_leaves_the_folder_fields():
    assert path_fields("site=a/x.jpg", r"(?P<camera>cam\d+)/") == {"site": "a"}
    assert path_fields("x.jpg", r"(?P<camera>cam\d+)/") == {}


def test_a_bad_pattern_is_a_one_line_error():
    assert compile_path_pattern(None) is None
    assert compile_path_pattern(r"(?P<site>[^/]+)/").groupindex == {"site": 1}
    with pytest.raises(
        ValueError,
        match=r"path_pattern '\(\?P<site>\[\^/\]\+' is not a valid "
        "regular expression: missing \\), unterminated",
    ):
        compile_path_pattern("(?P<site>[^/]+")
    with pytest.raises(ValueError, match="has no named group"):
        compile_path_pattern(r"([^/]+)/cam\d+")


def test_an_image_row_fits_the_images_schema():
    data = with_exif(
        exif_of(
            {DATE_TIME_ORIGINAL: "2024:05:01 10:20:30"},
            {1: "S", 2: (1.0, 0.0, 0.0), 3: "W", 4: (2.0, 0.0, 0.0)},
        )
    )
    stamp = RunStamp("roads", "3", "r")
    row = image_row(
        "s3://b/site=a/cam01/x.jpg",
        "site=a/cam01/x.jpg",
        "etag=e;size=9",
        data,
        12,
        8,
        stamp,
        r"(?P<camera>cam\d+)",
    )
    assert row == ImageRow(
        image_uri="s3://b/site=a/cam01/x.jpg",
        image_width=12,
        image_height=8,
        bytes=len(data),
        fingerprint="etag=e;size=9",
        captured_at=datetime.datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC),
        gps_latitude=-1.0,
        gps_longitude=-2.0,
        path_fields={"site": "a", "camera": "cam01"},
        model_version="3",
        run_id="r",
    )
    plain = image_row("x.png", "x.png", "size=1", with_exif(None, "PNG"), 12, 8, stamp)
    table = rows_to_table(ImageRow, [row, plain])
    assert table.column("path_fields").to_pylist() == [[("site", "a"), ("camera", "cam01")], []]
    assert table.column("captured_at").null_count == 1
