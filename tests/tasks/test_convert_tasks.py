"""The Prefect tasks' own logic, called through ``.fn`` (no API needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prefect.states import Completed, Failed

from tasks import convert
from tasks.annotations.labels import LabelMap
from tests.support.builders import image_bytes, labelme_json, png_of, shape, write


def test_list_sources_per_format(tmp_path: Path):
    write(tmp_path / "a.json", "{}")
    write(tmp_path / "sub/b.JSON", "{}")
    write(tmp_path / "set1/cv2_mask/x.png", png_of(np.zeros((2, 2), np.uint8)))
    write(tmp_path / "set1/pic/x.png", image_bytes(2, 2))
    root, files = convert.list_sources.fn(str(tmp_path), "labelme")
    assert (root, files) == (str(tmp_path), ["a.json", "sub/b.JSON"])
    assert convert.list_sources.fn(str(tmp_path), "legacy")[1] == ["set1/cv2_mask/x.png"]
    assert convert.list_sources.fn(str(tmp_path / "a.json"), "via") == (str(tmp_path), ["a.json"])


def test_list_sources_refuses_missing_or_empty_input(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert.list_sources.fn(str(tmp_path / "nope"), "labelme")
    write(tmp_path / "only.txt", "x")
    with pytest.raises(ValueError, match=r"no legacy source files \(cv2_mask/\*.png\)"):
        convert.list_sources.fn(str(tmp_path), "legacy")


def test_embedded_images_are_staged_by_content(tmp_path: Path):
    data = image_bytes(8, 8)
    write(
        tmp_path / "in/a.json",
        labelme_json("a.png", 8, 8, [shape("cat", [[1, 1], [5, 1], [5, 5]])], image_data=data),
    )
    summary = convert.convert_source.fn(
        str(tmp_path / "in"), "a.json", "labelme", LabelMap(), str(tmp_path / "staging")
    )
    (image,) = summary["images"]
    staged = Path(image["image_uri"])
    assert staged.parent == tmp_path / "staging" and staged.suffix == ".png"
    assert staged.read_bytes() == data
    assert image["instances"][0]["label"] == "cat" and image["instances"][0]["area"] == 15


@pytest.mark.parametrize(
    ("state", "retry"),
    [
        (Failed(data=ConnectionResetError("connection reset")), True),
        (Failed(data=TimeoutError("read timed out")), True),
        (Failed(data=FileNotFoundError("gone")), False),
        (Failed(data=PermissionError("denied")), False),
        (Failed(data=ValueError("bad annotation")), False),
        (Completed(), False),
    ],
)
def test_only_transient_storage_errors_are_retried(state, retry):
    assert convert.convert_source.retry_condition_fn(None, None, state) is retry
