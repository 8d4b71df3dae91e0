"""Exports: each loads in its own runtime's loader and detects what the Keras model detects."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.config import NamedBackbone
from mrcnn.export import EXPORT_CONFIG, exported_config, exported_format, load_exported
from mrcnn.export_onnx import ONNX_FILE
from mrcnn.export_openvino import OPENVINO_FILE
from mrcnn.model import MaskRCNN
from tests.mrcnn.conftest import ExportConfig
from tests.support.code_modules import side_effect_module
from tests.support.parity import assert_same_detections


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        rng.integers(0, 256, (64, 48, 3), dtype=np.uint8),
        rng.integers(0, 256, (40, 64, 3), dtype=np.uint8),
    ]


@pytest.fixture(scope="module")
def model(export_model: MaskRCNN) -> MaskRCNN:
    """The session's light random-weight model whose ROIs score distinct values."""
    return export_model


@pytest.fixture(scope="module")
def saved_model(model, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("export") / "saved")
    model.export(path)
    return path


@pytest.fixture(scope="module")
def onnx_model(model, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("export") / "onnx")
    model.export(path, format="onnx")
    return path


def test_serving_signature_matches_predict_fn(model, saved_model):
    molded, metas, _ = model.mold_inputs(_images())
    expected = model._predict_fn()(molded, metas)
    serve = tf.saved_model.load(saved_model).signatures["serving_default"]
    got = serve(images=tf.constant(molded), metas=tf.constant(metas))
    assert set(got) == {"detections", "masks"}
    detections = expected["detections"].numpy()
    assert detections.shape == (2, ExportConfig.DETECTION_MAX_INSTANCES, 6)
    assert (detections[..., 4] > 0).any(), "the class head must give detections"
    np.testing.assert_array_equal(got["detections"].numpy(), detections)
    np.testing.assert_array_equal(got["masks"].numpy(), expected["masks"].numpy())


def test_saved_model_cli_runs_the_export(model, saved_model, tmp_path):
    """The command-line loader (the C++ SavedModel loader TF Serving uses) finds every variable."""
    molded, metas, _ = model.mold_inputs(_images())
    np.save(tmp_path / "images.npy", molded)
    np.save(tmp_path / "metas.npy", metas)
    cli = Path(sys.executable).with_name("saved_model_cli")
    subprocess.run(
        [
            str(cli),
            "run",
            "--dir",
            saved_model,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={tmp_path}/images.npy;metas={tmp_path}/metas.npy",
            "--outdir",
            str(tmp_path / "out"),
        ],
        check=True,
        capture_output=True,
    )
    expected = model._predict_fn()(molded, metas)
    np.testing.assert_array_equal(
        np.load(tmp_path / "out" / "detections.npy"), expected["detections"].numpy()
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "out" / "masks.npy"), expected["masks"].numpy()
    )


def test_saved_model_stores_the_weights_once(model, saved_model):
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.keras_model.weights)
    stored = sum(f.stat().st_size for f in Path(saved_model, "variables").iterdir())
    assert weight_bytes * 0.9 < stored < weight_bytes * 1.1


def test_load_exported_detects_like_the_model(model, saved_model):
    images = _images()
    for image, got, expected in zip(
        images, load_exported(saved_model)(images), model.detect(images)
    ):
        assert len(expected["class_ids"]) > 0
        assert got["masks"].shape == (*image.shape[:2], len(expected["class_ids"]))
        np.testing.assert_array_equal(got["rois"], expected["rois"])
        np.testing.assert_array_equal(got["class_ids"], expected["class_ids"])
        np.testing.assert_array_equal(got["scores"], expected["scores"])
        np.testing.assert_array_equal(got["masks"], expected["masks"])


def test_onnx_export_matches_the_model_in_onnx_runtime(model, onnx_model):
    assert exported_format(onnx_model) == "onnx" and Path(onnx_model, ONNX_FILE).is_file()
    images = _images()
    assert_same_detections(load_exported(onnx_model)(images), model.detect(images))


def test_openvino_export_matches_the_model_in_openvino(model, openvino_export):
    assert exported_format(openvino_export) == "openvino"
    assert Path(openvino_export, OPENVINO_FILE).is_file()
    images = _images()  # padded: the anchors over the padding tie, and keep TF's order
    assert_same_detections(
        load_exported(openvino_export, precision="float32")(images), model.detect(images)
    )


def test_openvino_export_keeps_no_stable_sort_over_all_anchors(openvino_export):
    """The proposal layer's top-k over every anchor reads only values: it must run unstable."""
    import openvino

    from mrcnn.export_openvino import graph_nodes

    graph = openvino.Core().read_model(str(Path(openvino_export, OPENVINO_FILE)))
    top_ks = [node for node in graph_nodes(graph) if node.get_type_name() == "TopK"]
    values_only = [node for node in top_ks if not node.output(1).get_target_inputs()]
    assert values_only and all(not node.get_attributes()["stable"] for node in values_only)
    assert all(node.get_attributes()["stable"] for node in top_ks if node not in values_only)


def test_export_writes_the_config(model, saved_model, onnx_model, openvino_export):
    for path in (saved_model, onnx_model, openvino_export):
        saved = json.loads((Path(path) / EXPORT_CONFIG).read_text())
        assert saved["NUM_CLASSES"] == model.config.NUM_CLASSES
        assert saved["BACKBONE"] == "resnet18"


def test_export_rejects_an_unknown_format(model, tmp_path):
    with pytest.raises(ValueError, match="'tflite'"):
        model.export(tmp_path / "x", format="tflite")


def test_export_rejects_an_option_its_format_does_not_take_before_writing(model, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"export format 'onnx' takes no option 'calibration' "
        r"\(its options: none\)",
    ):
        model.export(tmp_path / "x", format="onnx", calibration=_images())
    assert not (tmp_path / "x").exists()


def test_load_exported_rejects_a_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match=EXPORT_CONFIG):
        load_exported(tmp_path)


def test_load_exported_rejects_a_config_without_graph(tmp_path):
    (tmp_path / EXPORT_CONFIG).write_text("{}")
    with pytest.raises(
        FileNotFoundError, match="no graph file .saved_model.pb, model.onnx, model.xml"
    ):
        load_exported(tmp_path)


def test_an_export_whose_config_names_code_runs_without_importing_it(
    model, saved_model, tmp_path, monkeypatch
):
    """A callable backbone is inside the exported graph: its name in the config stays a name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = side_effect_module(tmp_path)
    folder = tmp_path / "export"
    shutil.copytree(saved_model, folder)
    config = json.loads((folder / EXPORT_CONFIG).read_text())
    (folder / EXPORT_CONFIG).write_text(json.dumps({**config, "BACKBONE": module.reference()}))
    assert exported_config(folder).BACKBONE == NamedBackbone(module.reference())
    images = _images()
    for got, expected in zip(load_exported(folder)(images), model.detect(images)):
        np.testing.assert_array_equal(got["rois"], expected["rois"])
        np.testing.assert_array_equal(got["masks"], expected["masks"])
    assert not module.imported()
