"""The commit protocol's invariants, checked on an output folder at rest (local or s3://).

Used by the table unit tests and the fault-injection tests alike, so that every scenario is
held to the same definition of "exact".
"""

from __future__ import annotations

import collections
import posixpath

import pyarrow.dataset as ds

from tasks import storage
from tasks.parquet_schemas import SCHEMAS
from tasks.tables import cleanup, read_current


def read_table(out: str, table: str) -> list[dict]:
    """All committed rows of a table, ``run_date`` included, as pyarrow's dataset reads them."""
    root = storage.join(out, table)
    if not storage.exists(root):
        return []
    fs = storage.filesystem_for(out)
    dataset = ds.dataset(
        fs._strip_protocol(root), filesystem=fs, format="parquet", partitioning="hive"
    )
    return [{**row, "run_date": str(row["run_date"])} for row in dataset.to_table().to_pylist()]


def check_invariants(
    out: str, classes: int, expected: dict[str, set[str]] | None = None
) -> dict[str, int]:
    """Assert I1 and I4 at rest (``images`` included); returns row counts per table.

    Args:
        out: the output folder.
        classes: classes of the model (rows per processed image in ``area_ratios``).
        expected: optional ``{run_date: image URIs}`` that must each have a result or error.
    """
    areas, instances, errors = (read_table(out, t) for t in ("area_ratios", "instances", "errors"))
    per_image = collections.Counter((r["image_uri"], r["run_date"]) for r in areas)
    per_class = {(r["image_uri"], r["run_date"], r["class_id"]): r["instance_count"] for r in areas}
    assert len(per_class) == len(areas), "an (image, run_date, class) appears twice"
    assert set(per_image.values()) <= {classes}, f"rows per image: {per_image}"
    failed = collections.Counter((r["image_uri"], r["run_date"]) for r in errors)
    assert set(failed.values()) <= {1}, f"errors doubled: {failed}"
    assert not set(failed) & set(per_image), "an image has both a result and an error"
    found = collections.Counter((r["image_uri"], r["run_date"], r["class_id"]) for r in instances)
    for key, count in found.items():
        assert per_class.get(key) == count, f"instances disagree with area_ratios for {key}"
    assert sum(per_class.values()) == len(instances)
    if expected is not None:
        for run_date, uris in expected.items():
            seen = {u for u, d in (*per_image, *failed) if d == run_date}
            assert seen == set(uris), (
                f"{run_date}: missing {set(uris) - seen}, extra {seen - set(uris)}"
            )
    described = _check_images(out, areas, errors)
    _check_files(out)
    return {
        "area_ratios": len(areas),
        "instances": len(instances),
        "errors": len(errors),
        "images": described,
    }


def _check_images(out: str, areas: list[dict], errors: list[dict]) -> int:
    """One ``images`` row per decoded image (a result or an inference error), from the same
    commit as its other rows: the size of its ``area_ratios`` rows, the index's fingerprint."""
    images = read_table(out, "images")
    described = collections.Counter((r["image_uri"], r["run_date"]) for r in images)
    assert set(described.values()) <= {1}, f"images rows doubled: {described}"
    decoded = {(r["image_uri"], r["run_date"]) for r in areas}
    decoded |= {
        (r["image_uri"], r["run_date"]) for r in errors if r["error_type"] == "inference_error"
    }
    assert set(described) == decoded, (
        f"images rows missing for {decoded - set(described)}, extra for {set(described) - decoded}"
    )
    sizes = {(r["image_uri"], r["run_date"]): (r["image_width"], r["image_height"]) for r in areas}
    index = read_current(out)
    fingerprints = dict(
        zip(
            zip(index["image_uri"].to_pylist(), index["run_date"].to_pylist()),
            index["fingerprint"].to_pylist(),
        )
    )
    for row in images:
        key = (row["image_uri"], row["run_date"])
        assert sizes.get(key, (row["image_width"], row["image_height"])) == (
            row["image_width"],
            row["image_height"],
        ), f"images disagrees with area_ratios: {key}"
        assert fingerprints.get(key) == row["fingerprint"], f"images disagrees with index: {key}"
    return len(images)


def _check_files(out: str) -> None:
    """Every table file is in the index; nothing of a crashed run is left."""
    index = read_current(out)
    referenced = set(zip(index["run_date"].to_pylist(), index["file"].to_pylist()))
    files = storage.list_files(out)
    for uri in files:
        relative = storage.relative_path(uri, out)
        assert not cleanup.is_temporary(uri), f"temporary file left: {relative}"
        assert not relative.startswith(("_manifest/staging/", "_manifest/commits/")), (
            f"staged or prepared file left: {relative}"
        )
        parts = relative.split("/")
        if parts[0] in SCHEMAS:
            day = parts[1].removeprefix("run_date=")
            stem = posixpath.basename(uri).removeprefix("part-").removesuffix(".parquet")
            assert (day, stem) in referenced, f"orphan table file: {relative}"
