"""`tasks.models.resolve` on export folders named as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrcnn.config import Config
from tasks.models import resolve


def test_an_export_folder_relative_to_the_working_directory_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    export = tmp_path / "registry" / "roads" / "versions" / "1" / "exports" / "saved_model"
    export.mkdir(parents=True)
    config = Config(NAME="roads", NUM_CLASSES=3, BACKBONE="resnet18")
    (export / "saved_model.pb").write_bytes(b"graph")
    (export / "classes.json").write_text(json.dumps(["car", "pothole"]))
    (export / "model.json").write_text(json.dumps({"name": "roads", "version": "1"}))
    (export / "mrcnn_config.json").write_text(config.to_json())
    monkeypatch.chdir(tmp_path)

    artifact = resolve("registry/roads/versions/1/exports/saved_model")

    assert (artifact.format, artifact.identity) == ("saved_model", "roads@1")
    assert artifact.class_names == ("car", "pothole")
    assert artifact.sha256 == resolve(str(export)).sha256  # same bytes, same identity
