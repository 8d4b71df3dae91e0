"""One resolver, exports beside registry versions, and batch inference in each runtime.

A registered model is exported through the CLI (SavedModel, ONNX and OpenVINO IR, to the
version's ``exports/`` folder); each export is itself a ``--model`` source; batch inference with
``--runtime onnxruntime``, ``--runtime openvino`` and with the SavedModel writes the tables the
Keras weights write, within the parity tolerances. The three exports are made once for the
module (`exports`) and shared by the tests that read them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mrcnn_pipeline.cli import main
from tasks import registry
from tasks.models import build, resolve
from tests.support.tiny_model import CLASS_NAMES, distinct_model_dir, png_bytes

DAY = "2024-05-01"


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registry with ``tiny`` v1 (ResNet-18, tie-free scores) as ``production``."""
    folder = distinct_model_dir()
    reg = str(tmp_path_factory.mktemp("registry"))
    version = registry.register_version(
        reg,
        "tiny",
        str(folder / "model.weights.h5"),
        json.loads((folder / "config.json").read_text()),
        CLASS_NAMES,
        {},
        {},
    )
    registry.set_alias(version, "production")
    return reg


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for index, (height, width) in enumerate([(40, 60), (64, 48), (50, 50)]):
        (folder / f"{index}.png").write_bytes(png_bytes(height, width, seed=index))
    return folder


def cli(argv: list[str]) -> subprocess.CompletedProcess:
    """``mrcnn-pipeline ARGV`` as a user runs it: its own process, on the test's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    return subprocess.run(
        [sys.executable, "-m", "mrcnn_pipeline.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def export(reg: str, fmt: str, own_process: bool = True) -> str:
    """``export-model`` of ``tiny@production`` as ``fmt``; the export folder it prints.

    ``own_process=False`` calls the same entry point in the test's process, which saves the
    TensorFlow start-up of a process of its own.
    """
    argv = ["export-model", "--model", "tiny@production", "--format", fmt, "--registry", reg]
    if own_process:
        done = cli([*argv, "--json"])
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["export"]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main([*argv, "--json"]) == 0
    return json.loads(printed.getvalue())["export"]


@dataclasses.dataclass(frozen=True)
class Exports:
    """The export folders of ``tiny@production`` by format, and the registry's versions as
    they were before exporting."""

    folders: dict[str, str]
    versions_before: list[int]


@pytest.fixture(scope="module")
def exports(registered: str, prefect_harness: None) -> Exports:
    """``tiny@production`` exported in each format: ONNX by the installed command in a process
    of its own, as a user runs it, SavedModel and OpenVINO IR by its entry point in-process."""
    versions = registry.list_versions(registered, "tiny")
    folders = {"onnx": export(registered, "onnx")}
    for fmt in ("saved_model", "openvino"):
        folders[fmt] = export(registered, fmt, own_process=False)
    return Exports(folders, versions)


def infer(
    images: Path, out: Path, model: str, reg: str, runtime: str = "tensorflow", *options: str
) -> None:
    assert (
        main(
            [
                "infer",
                "--model",
                model,
                "--registry",
                reg,
                "--runtime",
                runtime,
                "--input",
                str(images),
                "--output",
                str(out),
                "--run-date",
                DAY,
                "--no-overlays",
                "--no-csv",
                "--json",
                *options,
            ]
        )
        == 0
    )


def tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = ["image_uri", "class_name"]
    areas = pd.read_parquet(out / "area_ratios").sort_values(keys).reset_index(drop=True)
    instances = (
        pd.read_parquet(out / "instances")
        .sort_values(["image_uri", "score"], ascending=[True, False])
        .reset_index(drop=True)
    )
    return areas, instances


def assert_same_tables(got: Path, expected: Path) -> None:
    got_areas, got_instances = tables(got)
    areas, instances = tables(expected)
    assert len(instances) > 0, "the reference model must detect something"
    for column in ("image_uri", "class_name", "model_name", "model_version", "instance_count"):
        assert got_areas[column].tolist() == areas[column].tolist(), column
    np.testing.assert_allclose(got_areas["area_ratio"], areas["area_ratio"], atol=2e-3)
    assert got_instances["class_name"].tolist() == instances["class_name"].tolist()
    np.testing.assert_allclose(got_instances["score"], instances["score"], atol=1e-4)
    for column in ("x1", "y1", "x2", "y2"):
        np.testing.assert_allclose(got_instances[column], instances[column], atol=1)


def test_resolve_pins_the_alias_once_and_names_every_file(registered: str, tmp_path: Path):
    artifact = resolve("tiny@production", registered)
    assert (artifact.identity, artifact.reference, artifact.format) == (
        "tiny@1",
        "tiny@v1",
        "keras",
    )
    assert artifact.class_names == tuple(CLASS_NAMES) and artifact.config["BACKBONE"] == "resnet18"
    weights = artifact.uri
    later = registry.register_version(
        registered, "tiny", weights, artifact.config, CLASS_NAMES, {}, {}
    )
    registry.set_alias(later, "production")
    try:
        assert build(artifact).version == "1"  # pinned: the moved alias does not change it
        assert resolve("tiny@production", registered).identity == "tiny@2"
    finally:
        registry.set_alias(registry.ModelVersion(registered, "tiny", 1), "production")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for epoch in (1, 2):
        checkpoint = run / "checkpoints" / f"mask_rcnn_tiny_{epoch:04d}.weights.h5"
        checkpoint.write_bytes(Path(weights).read_bytes())
    (run / "config.json").write_text(json.dumps(artifact.config))
    (run / "classes.json").write_text(json.dumps(CLASS_NAMES))
    from_run = resolve(str(run))
    assert from_run.uri.endswith("mask_rcnn_tiny_0002.weights.h5") and from_run.origin == str(run)
    assert from_run.version.startswith("sha256-") and from_run.class_names == tuple(CLASS_NAMES)
    assert (
        resolve(str(run / "checkpoints" / "mask_rcnn_tiny_0001.weights.h5")).sha256
        == from_run.sha256
    )


@pytest.mark.usefixtures("prefect_harness")
def test_exports_run_in_their_runtimes_with_the_tables_of_the_keras_weights(
    registered: str, exports: Exports, images: Path, tmp_path: Path
):
    onnx_folder = exports.folders["onnx"]
    saved_folder = exports.folders["saved_model"]
    openvino_folder = exports.folders["openvino"]
    for fmt, folder in exports.folders.items():
        assert folder.endswith(f"tiny/versions/1/exports/{fmt}")
        artifact = resolve(folder)
        assert (artifact.identity, artifact.format) == ("tiny@1", fmt)
        assert artifact.class_names == tuple(CLASS_NAMES)
    # exports are no new versions
    assert registry.list_versions(registered, "tiny") == exports.versions_before

    infer(images, tmp_path / "keras", "tiny@v1", registered)
    infer(images, tmp_path / "onnx", onnx_folder, registered, runtime="onnxruntime")
    infer(images, tmp_path / "saved", saved_folder, registered)
    infer(
        images,
        tmp_path / "openvino",
        openvino_folder,
        registered,
        "openvino",
        "--precision",
        "float32",
    )
    assert_same_tables(tmp_path / "onnx", tmp_path / "keras")
    assert_same_tables(tmp_path / "saved", tmp_path / "keras")
    assert_same_tables(tmp_path / "openvino", tmp_path / "keras")


@pytest.mark.usefixtures("prefect_harness")
def test_a_runtime_that_cannot_run_the_model_is_one_line(
    registered: str, images: Path, tmp_path: Path
):
    """The installed command, as a user runs it: one line on stderr, exit code 1."""
    done = cli(
        [
            "infer",
            "--model",
            "tiny@production",
            "--registry",
            registered,
            "--runtime",
            "onnxruntime",
            "--input",
            str(images),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert done.returncode == 1
    assert done.stderr == (
        "mrcnn-pipeline infer: error: model 'tiny@production' is a keras model, "
        "which runtime 'onnxruntime' does not run (use tensorflow, or export it "
        "with mrcnn-pipeline export-model)\n"
    )
    done = cli(
        [
            "infer",
            "--model",
            "tiny@production",
            "--registry",
            registered,
            "--precision",
            "float16",
            "--input",
            str(images),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert done.returncode == 2 and "invalid choice: 'float16'" in done.stderr
    done = cli(["export-model", "--model", str(images), "--format", "onnx"])
    assert done.returncode == 1 and "neither a registry reference" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_an_export_keeps_its_precision(registered: str, exports: Exports):
    """A SavedModel or ONNX graph runs as exported; Keras weights and OpenVINO IR choose."""
    from tasks.models import check_runtime

    keras_model = resolve("tiny@production", registered)
    check_runtime(keras_model, "tensorflow", "bfloat16")
    fixed = resolve(exports.folders["saved_model"])
    check_runtime(fixed, "tensorflow", "float32")
    with pytest.raises(
        ValueError, match="saved_model export in float32; its precision cannot change to bfloat16"
    ):
        check_runtime(fixed, "tensorflow", "bfloat16")
    with pytest.raises(ValueError, match="precision must be one of"):
        check_runtime(keras_model, "tensorflow", "float16")


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_records_the_precision_its_shards_computed_in(
    registered: str, exports: Exports, images: Path, tmp_path: Path, capsys
):
    """`--precision auto` resolves per machine (mrcnn.precision) and the summary says to what;
    an export written in float32 runs float32 whatever is asked."""
    from mrcnn.precision import inference_precision

    expected = inference_precision("auto").precision
    infer(
        images,
        tmp_path / "auto",
        "tiny@production",
        registered,
        "tensorflow",
        "--precision",
        "auto",
    )
    assert json.loads(capsys.readouterr().out)["precision"] == [expected]
    loaded = build(resolve(exports.folders["saved_model"]), "tensorflow", precision="auto")
    assert (loaded.precision.precision, loaded.precision.reason) == (
        "float32",
        "exported in float32",
    )
