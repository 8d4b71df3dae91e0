"""The batch-inference flow end to end with a tiny random-weight model: every image ends as
rows or one error, re-runs skip, changes replace rows, on disk, on a real S3 server and
through a registry reference; plus listing and planning."""

from __future__ import annotations

import datetime
import io
import json
import struct
import zlib
from pathlib import Path

import duckdb
import h5py
import numpy as np
import pytest
from PIL import Image

from flows.batch_inference import batch_inference
from mrcnn_pipeline.cli import main
from mrcnn_pipeline.results import summarize
from tasks import storage
from tasks.annotations.rle import mask_from_string
from tasks.inference.shards import ImageRef, find_images, overlay_names, plan_shards, shard_key
from tasks.models import resolve
from tests.support.tiny_model import CLASS_NAMES, png_bytes, tiny_model_dir

DAY = "2024-05-01"


@pytest.fixture(scope="module")
def tiny() -> Path:
    return tiny_model_dir()


def files_of(tiny: Path) -> dict[str, str]:
    return {"weights": str(tiny / "model.weights.h5"), "config": str(tiny / "config.json")}


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bomb() -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def image_folder(root: Path) -> dict[str, str]:
    """Nine good images in several formats and modes, six bad ones (name -> error type)."""
    rgb = np.random.default_rng(1).integers(0, 256, (30, 60, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise: 60 x 30 stored -> 30 wide, 60 high
    good_png = png_bytes(40, 60, seed=2)
    half = png_bytes(40, 40, seed=3)
    corrupt = bytearray(png_bytes(40, 40, seed=4))
    start = corrupt.index(b"IDAT") + 20
    corrupt[start : start + 40] = bytes(b ^ 0xFF for b in corrupt[start : start + 40])
    files = {
        "a.png": good_png,
        "sub/b.JPG": encoded(Image.fromarray(rgb), "JPEG"),
        "sub/deeper/c_gray.png": png_bytes(32, 48, seed=5, mode="L"),
        "d_rgba.png": png_bytes(40, 32, seed=6, mode="RGBA"),
        "e16.png": encoded(Image.fromarray(np.full((32, 32), 40000, np.uint16)), "PNG"),
        "f_cmyk.tif": encoded(Image.new("CMYK", (40, 30), (0, 200, 100, 20)), "TIFF"),
        "g_exif.jpg": encoded(Image.fromarray(rgb), "JPEG", exif=exif),
        "h.bmp": encoded(Image.fromarray(rgb), "BMP"),
        "i.webp": encoded(Image.fromarray(rgb), "WEBP"),
        "bad/empty.png": b"",
        "bad/text.jpg": b"car,0.9\n",
        "bad/truncated.png": half[: len(half) // 2],
        "bad/corrupt.png": bytes(corrupt),
        "bad/bomb.png": bomb(),
        "bad/float.tiff": encoded(Image.new("F", (8, 8)), "TIFF"),
        "notes.txt": b"not listed",
        "sub/readme.md": b"not listed",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return {
        "bad/empty.png": "empty_file",
        "bad/text.jpg": "not_an_image",
        "bad/truncated.png": "truncated",
        "bad/corrupt.png": "corrupt",
        "bad/bomb.png": "too_large",
        "bad/float.tiff": "unsupported_mode",
    }


def rows(out: str | Path, table: str, columns: str = "*") -> list[tuple]:
    return duckdb.sql(
        f"SELECT {columns} FROM read_parquet('{out}/{table}/*/*.parquet', "
        "hive_partitioning=true) ORDER BY ALL"
    ).fetchall()


def table_files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*.parquet"))
        if "_manifest" not in p.parts
    }


@pytest.mark.usefixtures("prefect_harness")
def test_local_folder_every_image_accounted_for_then_incremental(tmp_path: Path, tiny: Path):
    source, out = tmp_path / "in", tmp_path / "out"
    bad = image_folder(source)
    run = dict(
        input_uri=str(source),
        output_uri=str(out),
        run_date=DAY,
        batch_size=2,
        shard_size=4,
        **files_of(tiny),
    )
    summary = batch_inference(**run)
    assert (summary.listed, summary.processed, summary.errors) == (15, 9, 6)
    assert summary.error_types == {kind: 1 for kind in bad.values()}
    assert (summary.model_name, summary.run_date) == ("tiny", DAY)
    as_json = json.loads(json.dumps(summary.as_dict()))  # what infer --json prints
    assert as_json["processed"] == 9 and set(as_json["classes"]) == {"car", "pothole"}
    assert sum(totals["images"] for totals in as_json["classes"].values()) == sum(
        totals.images for totals in summary.classes.values()
    )

    errors = {uri: kind for uri, kind in rows(out, "errors", "image_uri, error_type")}
    assert errors == {str(source / name): kind for name, kind in bad.items()}
    areas = rows(
        out,
        "area_ratios",
        "image_uri, class_id, class_name, instance_count, "
        "pixel_count, area_ratio, image_width, image_height, run_date",
    )
    good = {uri for uri, *_ in areas}
    assert len(areas) == 9 * 2 and len(good) == 9 and not good & set(errors)
    assert good | set(errors) == {ref.uri for ref in find_images(str(source))}  # nothing lost
    for _uri, class_id, name, _count, pixels, ratio, width, height, day in areas:
        assert name == CLASS_NAMES[class_id - 1] and str(day) == DAY
        assert ratio == pytest.approx(pixels / (width * height)) and 0.0 <= ratio <= 1.0
    sizes = {Path(uri).name: (w, h) for uri, *_, w, h, _ in areas}
    assert sizes["g_exif.jpg"] == (30, 60) and sizes["b.JPG"] == (60, 30)
    instances = rows(out, "instances", "image_uri, class_id, pixel_count")
    assert len(instances) == sum(r[3] for r in areas) > 0
    for pixels, mask_rle, width, height in duckdb.sql(
        f"SELECT i.pixel_count, i.mask_rle, a.image_width, a.image_height FROM read_parquet("
        f"'{out}/instances/*/*.parquet') i JOIN read_parquet('{out}/area_ratios/*/*.parquet')"
        f" a USING (image_uri, class_id)"
    ).fetchall():  # masks at the original image size
        mask = mask_from_string(mask_rle)
        assert mask.shape == (height, width) and mask.sum() == pixels
    for uri, class_id, _, _count, union, *_ in areas:  # the union never exceeds the sum
        assert union <= sum(p for u, c, p in instances if (u, c) == (uri, class_id))
    overlays = sorted(
        p.relative_to(out / "overlays" / f"run_date={DAY}").as_posix()
        for p in (out / "overlays").rglob("*.jpg")
    )
    assert overlays == sorted(str(Path(u).relative_to(source).with_suffix(".jpg")) for u in good)
    assert Image.open(out / "overlays" / f"run_date={DAY}" / "g_exif.jpg").size == (30, 60)
    assert len(set(rows(out, "area_ratios", "run_id"))) == 1
    # images: one row per decoded image, with the size area_ratios has and the listing's identity
    described = rows(out, "images", "image_uri, image_width, image_height, bytes, fingerprint")
    listing = {ref.uri: ref.fingerprint for ref in find_images(str(source))}
    assert {uri for uri, *_ in described} == good and len(described) == 9
    assert {(uri, w, h) for uri, w, h, *_ in described} == {(u, w, h) for u, *_, w, h, _ in areas}
    for uri, _, _, size, fingerprint in described:
        assert size == Path(uri).stat().st_size and fingerprint == listing[uri]

    before = table_files(out)
    again = batch_inference(**run)
    assert (again.processed, again.errors, again.skipped) == (0, 0, 15)
    assert table_files(out) == before  # a re-run with nothing new writes nothing

    (source / "a.png").write_bytes(png_bytes(64, 40, seed=9))  # changed content and size
    (source / "bad/truncated.png").write_bytes(png_bytes(20, 20, seed=10))  # repaired
    (source / "new.png").write_bytes(png_bytes(36, 36, seed=11))
    third = batch_inference(**run)
    assert (third.processed, third.errors, third.skipped) == (3, 0, 13)
    areas = rows(out, "area_ratios", "image_uri, image_width, image_height")
    assert len(areas) == 11 * 2 and len(set(areas)) == 11  # one result per image, no doubles
    assert (str(source / "a.png"), 40, 64) in areas
    assert len(rows(out, "errors")) == 5

    counts = {t: len(rows(out, t)) for t in ("area_ratios", "instances", "errors", "images")}
    assert counts["images"] == 11 and (str(source / "a.png"), 40, 64) in rows(
        out, "images", "image_uri, image_width, image_height"
    )  # the changed image's new row
    fourth = batch_inference(**{**run, "reprocess": True, "shard_size": 3})
    assert (fourth.processed, fourth.errors, fourth.skipped) == (11, 5, 0)
    assert {t: len(rows(out, t)) for t in counts} == counts  # reprocessing replaces rows

    later = batch_inference(**{**run, "run_date": "2024-05-02"})
    assert later.processed == 0 and not (out / "area_ratios" / "run_date=2024-05-02").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_cli_infer_writes_tables_and_csv_and_results_summarises(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture
):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "x.png").write_bytes(png_bytes(40, 50, seed=1))
    (source / "y.jpg").write_bytes(b"")
    argv = [
        "infer",
        "--weights",
        str(tiny / "model.weights.h5"),
        "--config",
        str(tiny / "config.json"),
        "--input-folder",
        str(source),
        "--output-folder",
        str(out),
        "--device",
        "cpu",
        "--run-date",
        DAY,
        "--no-overlays",
        "--json",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["processed"], summary["errors"]) == (1, 1)
    lines = (out / f"results_{DAY}.csv").read_text().splitlines()
    assert lines[0] == (
        "image_uri,image_width,image_height,instance_count,car_area_pct,pothole_area_pct,error"
    )
    assert lines[1].startswith(f"{source / 'x.png'},50,40,") and lines[2].endswith(",empty_file")
    assert not (out / "overlays").exists()
    assert main(["results", "--output", str(out), "--format", "csv", "--class", "car"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(f"{DAY},car,1,")
    assert main(["results", "--output", str(tmp_path / "nothing")]) == 1
    assert "no area_ratios Parquet files" in capsys.readouterr().err


IMAGES_BY_SITE = """
SELECT i.path_fields['site'] AS site, a.class_name, count(*) AS images,
       avg(a.area_ratio) AS mean_area_ratio
FROM read_parquet('{out}/images/*/*.parquet', hive_partitioning = true) i
JOIN read_parquet('{out}/area_ratios/*/*.parquet', hive_partitioning = true) a
  USING (image_uri, run_date)
GROUP BY ALL ORDER BY ALL"""


@pytest.mark.usefixtures("prefect_harness")
def test_images_table_has_exif_and_path_fields_and_joins_area_ratios(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture
):
    source, out = tmp_path / "in", tmp_path / "out"
    exif = Image.Exif()
    exif[0x8769] = {0x9003: "2024:05:01 10:20:30", 0x9011: "+02:00"}  # DateTimeOriginal, offset
    exif[0x8825] = {1: "S", 2: (33.0, 51.0, 54.0), 3: "W", 4: (151.0, 12.0, 36.0)}  # GPS
    rgb = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    files = {
        "site=a/cam01/p.jpg": encoded(Image.fromarray(rgb), "JPEG", exif=exif),
        "site=a/cam02/q.png": png_bytes(40, 48, seed=4),
        "site=b/cam01/r.png": png_bytes(36, 36, seed=5),
        "loose/s.png": png_bytes(32, 32, seed=6),
        "site=b/cam01/empty.png": b"",
    }
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    argv = [
        "infer",
        "--weights",
        str(tiny / "model.weights.h5"),
        "--config",
        str(tiny / "config.json"),
        "--input",
        str(source),
        "--output",
        str(out),
        "--device",
        "cpu",
        "--run-date",
        DAY,
        "--no-overlays",
        "--no-csv",
        "--json",
    ]

    assert main([*argv, "--path-pattern", "(?P<site>[^/]+"]) == 1  # checked before any work
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("mrcnn-pipeline")] == [
        "mrcnn-pipeline infer: error: path_pattern '(?P<site>[^/]+' is not a valid regular "
        "expression: missing ), unterminated subpattern at position 0"
    ], err
    assert not out.exists()

    assert main([*argv, "--path-pattern", r"(?P<camera>cam\d+)/"]) == 0
    assert (json.loads(capsys.readouterr().out)["processed"], len(rows(out, "errors"))) == (4, 1)
    described = duckdb.sql(
        f"SELECT image_uri, image_width, image_height, captured_at, gps_latitude, gps_longitude,"
        f" path_fields, model_version, run_date FROM read_parquet("
        f"'{out}/images/*/*.parquet', hive_partitioning = true) ORDER BY image_uri"
    ).fetchall()
    by_name = {Path(uri).name: row for uri, *row in described}
    assert sorted(by_name) == ["p.jpg", "q.png", "r.png", "s.png"]  # the empty file: no row
    width, height, taken, latitude, longitude, fields, version, day = by_name["p.jpg"]
    versions = rows(out, "area_ratios", "DISTINCT model_version")
    assert (width, height, str(day), [(version,)]) == (40, 30, DAY, versions)
    assert taken.astimezone(datetime.timezone.utc) == datetime.datetime(
        2024, 5, 1, 8, 20, 30, tzinfo=datetime.timezone.utc
    )
    assert (latitude, longitude) == pytest.approx((-33.865, -151.21))
    assert fields == {"site": "a", "camera": "cam01"}
    assert by_name["s.png"][2:6] == [None, None, None, {}]  # no EXIF, no fields
    assert by_name["r.png"][5] == {"site": "b", "camera": "cam01"}
    # The documented query (docs/concepts/tables.md): area ratios by a path field, images
    # joined to area_ratios.
    by_site = duckdb.sql(IMAGES_BY_SITE.format(out=out)).fetchall()
    assert [(site, name, count) for site, name, count, _ in by_site] == [
        ("a", "car", 2),
        ("a", "pothole", 2),
        ("b", "car", 1),
        ("b", "pothole", 1),
        (None, "car", 1),
        (None, "pothole", 1),
    ]
    # The nightly deployment's last step: the report, broken down by a path field.
    again = batch_inference(
        input_uri=str(source),
        output_uri=str(out),
        run_date=DAY,
        report=True,
        report_path_field="site",
        **files_of(tiny),
    )
    page = Path(again.report).read_text()
    assert again.processed == 0 and again.report.endswith(f"run_date={DAY}/index.html")
    assert "<h2>By site</h2>" in page and "<td>a</td>" in page and "<td>b</td>" in page


@pytest.mark.usefixtures("prefect_harness")
def test_s3_input_and_output_with_credentials(s3_env, s3_prefix: str, tiny: Path):
    for index in range(3):
        storage.write_bytes(f"{s3_prefix}/in/day/{index}.png", png_bytes(40, 48, seed=index))
    storage.write_bytes(f"{s3_prefix}/in/day/broken.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 10)
    run = dict(
        input_uri=f"{s3_prefix}/in/",
        output_uri=f"{s3_prefix}/out",
        run_date=DAY,
        min_confidence=0.5,
        **files_of(tiny),
    )
    summary = batch_inference(**run)
    assert (summary.processed, summary.errors, summary.listed) == (3, 1, 4)
    columns, table = summarize(f"{s3_prefix}/out")  # DuckDB through the registered s3fs
    assert [dict(zip(columns, r))["images"] for r in table] == [3, 3]
    con = duckdb.connect()
    con.register_filesystem(storage.filesystem_for(s3_prefix))
    assert all(
        s >= 0.5
        for (s,) in con.sql(
            f"SELECT score FROM read_parquet('{s3_prefix}/out/instances/*/*.parquet')"
        ).fetchall()
    )
    assert len(storage.list_files(f"{s3_prefix}/out/overlays", (".jpg",))) == 3
    assert batch_inference(**run).skipped == 4


@pytest.mark.usefixtures("prefect_harness")
def test_wrong_s3_credentials_fail_fast_with_a_clear_error(
    s3_env, s3_prefix: str, tiny: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(PermissionError, match="access denied.*AWS_ACCESS_KEY_ID"):
        batch_inference(
            input_uri=f"{s3_prefix}/in", output_uri=f"{s3_prefix}/out", **files_of(tiny)
        )


@pytest.mark.usefixtures("prefect_harness")
def test_registry_reference_and_a_new_version_replace_rows(tmp_path: Path, tiny: Path):
    from tasks import registry

    config = json.loads((tiny / "config.json").read_text())
    first = registry.register_version(
        str(tmp_path / "reg"), "tiny", str(tiny / "model.weights.h5"), config, CLASS_NAMES, {}, {}
    )
    registry.set_alias(first, "production")
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for index in range(2):
        (source / f"{index}.png").write_bytes(png_bytes(40, 40, seed=index))
    run = dict(
        input_uri=str(source),
        output_uri=str(out),
        model="tiny@production",
        registry=str(tmp_path / "reg"),
        run_date=DAY,
        overlays=False,
    )
    assert batch_inference(**run).model_version == "1"
    second = registry.register_version(
        str(tmp_path / "reg"), "tiny", str(tiny / "model.weights.h5"), config, CLASS_NAMES, {}, {}
    )
    registry.set_alias(second, "production")
    summary = batch_inference(**run)  # a new version processes everything again, same day
    assert (summary.model_version, summary.processed, summary.skipped) == ("2", 2, 0)
    assert rows(out, "area_ratios", "DISTINCT model_version") == [("2",)]
    assert len(rows(out, "area_ratios")) == 2 * 2


def test_arguments_are_checked_before_any_work(tmp_path: Path):
    files = {"weights": "w.weights.h5", "config": "config.json"}
    with pytest.raises(ValueError, match="must not be inside"):
        batch_inference.fn(input_uri=str(tmp_path), output_uri=str(tmp_path / "out"), **files)
    with pytest.raises(ValueError, match="min_confidence"):
        batch_inference.fn(input_uri="in", output_uri="out", min_confidence=2.0, **files)
    with pytest.raises(ValueError, match="runtime must be one of"):
        batch_inference.fn(input_uri="in", output_uri="out", runtime="tflite", **files)
    with pytest.raises(ValueError, match="either model"):
        resolve("tiny@production", "r", **files)
    with pytest.raises(ValueError, match="needs its config"):
        resolve(weights="w.weights.h5")
    with pytest.raises(FileNotFoundError, match="neither a registry reference"):
        resolve(str(tmp_path / "nothing"), "r")
    with pytest.raises(ValueError, match="give the registry"):
        resolve("tiny@production")
    with pytest.raises(ValueError, match="no model"):
        resolve()


def test_class_names_from_a_file_beside_the_config_or_numbered(tmp_path: Path):
    weights = str(tmp_path / "w.h5")
    with h5py.File(weights, "w") as handle:  # resolve() reads metadata and hashes; nothing loads
        handle.attrs["layer_names"] = []
    (tmp_path / "run").mkdir()
    for folder in (tmp_path, tmp_path / "run"):
        (folder / "config.json").write_text(json.dumps({"NAME": "roads", "NUM_CLASSES": 3}))
    (tmp_path / "run" / "classes.json").write_text(json.dumps(CLASS_NAMES))
    beside = resolve(weights=weights, config=str(tmp_path / "run" / "config.json"))
    assert beside.class_names == ("car", "pothole")
    assert beside.identity.startswith("roads@sha256-") and beside.format == "keras"
    alone = resolve(weights=weights, config=str(tmp_path / "config.json"))
    assert alone.class_names == ("class_1", "class_2")
    (tmp_path / "names.txt").write_text("BG\nroad\nlane\n")
    named = resolve(
        weights=weights, config=str(tmp_path / "config.json"), classes=str(tmp_path / "names.txt")
    )
    assert named.class_names == ("road", "lane")
    (tmp_path / "config.json").write_text(json.dumps({"NAME": "roads", "NUM_CLASSES": 4}))
    with pytest.raises(ValueError, match="names 2 classes but the config has NUM_CLASSES=4"):
        resolve(
            weights=weights,
            config=str(tmp_path / "config.json"),
            classes=str(tmp_path / "names.txt"),
        )


def test_listing_filters_extensions_case_insensitively_and_by_pattern(tmp_path: Path):
    for name in ("a.PNG", "b.jpeg", "c.Tif", "d.webp", "e.bmp", "sub/f.jpg", "g.gif", "h.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * len(name))
    found = find_images(str(tmp_path))
    assert [ref.relative for ref in found] == [
        "a.PNG",
        "b.jpeg",
        "c.Tif",
        "d.webp",
        "e.bmp",
        "sub/f.jpg",
    ]
    assert found[0].uri == str(tmp_path / "a.PNG") and found[0].fingerprint.startswith("size=5;")
    assert [r.relative for r in find_images(str(tmp_path), ["sub/*", "*.bmp"])] == [
        "e.bmp",
        "sub/f.jpg",
    ]
    with pytest.raises(FileNotFoundError, match="input folder"):
        find_images(str(tmp_path / "missing"))


def test_overlays_keep_the_relative_path_with_a_jpg_extension_and_never_collide():
    names = overlay_names(
        ["incoming_0000.jpg", "a/b.png", "x.png", "x.jpg", "y.PNG", "y.tif", "z.JPG"]
    )
    assert names == {
        "incoming_0000.jpg": "incoming_0000.jpg",
        "a/b.png": "a/b.jpg",
        "x.png": "x.png.jpg",
        "x.jpg": "x.jpg",
        "y.PNG": "y.PNG.jpg",
        "y.tif": "y.tif.jpg",
        "z.JPG": "z.jpg",
    }
    assert len(set(names.values())) == len(names)


def test_planning_skips_done_images_and_shards_deterministically():
    images = [ImageRef(f"s3://b/{i}.png", f"{i}.png", f"etag={i}") for i in range(5)]
    done = {("s3://b/1.png", "etag=1"), ("s3://b/2.png", "etag=old")}
    shards = plan_shards(images, done, reprocess=False, shard_size=2)
    assert [[r.relative for r in s] for s in shards] == [["0.png", "2.png"], ["3.png", "4.png"]]
    assert len(plan_shards(images, done, reprocess=True, shard_size=2)) == 3
    assert shard_key(shards[0]) == shard_key(list(shards[0])) != shard_key(shards[1])
    changed = [shards[0][0], ImageRef("s3://b/2.png", "2.png", "etag=new")]
    assert shard_key(changed) != shard_key(shards[0])
    with pytest.raises(ValueError, match="shard_size"):
        plan_shards(images, done, False, 0)
