"""SavedModel export: the reloaded model gives the in-process model's detections and masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.model import EXPORT_CONFIG, MaskRCNN, load_exported
from tests.mrcnn.conftest import TinyConfig, fix_class_head


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (64, 48, 3), dtype=np.uint8), rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[MaskRCNN, str]:
    """A tiny random-weight model whose every ROI is class 1 (so detections exist), exported once."""
    model = MaskRCNN("inference", TinyConfig(), tmp_path_factory.mktemp("logs"))
    fix_class_head(model)
    path = str(tmp_path_factory.mktemp("export") / "model")
    model.export(path)
    return model, path


def test_serving_signature_matches_predict_fn(exported):
    model, path = exported
    molded, metas, _ = model.mold_inputs(_images())
    expected = model._predict_fn()(molded, metas)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    got = serve(images=tf.constant(molded), metas=tf.constant(metas))
    assert set(got) == {"detections", "masks"}
    detections = expected["detections"].numpy()
    assert detections.shape == (2, TinyConfig.DETECTION_MAX_INSTANCES, 6)
    assert (detections[..., 4] == 1).any(), "the fixed class head must give class-1 detections"
    np.testing.assert_allclose(got["detections"].numpy(), detections, atol=1e-6)
    np.testing.assert_allclose(got["masks"].numpy(), expected["masks"].numpy(), atol=1e-6)


def test_load_exported_detects_like_the_model(exported):
    model, path = exported
    images = _images()
    detect = load_exported(path)
    for image, got, expected in zip(images, detect(images), model.detect(images)):
        assert len(expected["class_ids"]) > 0
        assert got["masks"].shape == (*image.shape[:2], len(expected["class_ids"]))
        np.testing.assert_array_equal(got["rois"], expected["rois"])
        np.testing.assert_array_equal(got["class_ids"], expected["class_ids"])
        np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-6)
        np.testing.assert_array_equal(got["masks"], expected["masks"])


def test_export_writes_the_config(exported):
    model, path = exported
    saved = json.loads((Path(path) / EXPORT_CONFIG).read_text())
    assert saved["NUM_CLASSES"] == model.config.NUM_CLASSES
    assert saved["DETECTION_MAX_INSTANCES"] == model.config.DETECTION_MAX_INSTANCES


def test_load_exported_rejects_a_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match=EXPORT_CONFIG):
        load_exported(tmp_path)
