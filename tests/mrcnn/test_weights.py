"""Tests for mrcnn.weights: Keras 2 (matterport) and Keras 3 files, by name and in order."""

import h5py
import keras
import numpy as np
import pytest

from mrcnn.weights import load_weights

L = keras.layers


def _rpn_model() -> keras.Model:
    feature = keras.Input((None, None, 4))
    shared = L.Conv2D(8, 3, padding="same", activation="relu", name="rpn_conv_shared")(feature)
    logits = L.Conv2D(6, 1, name="rpn_class_raw")(shared)
    deltas = L.Conv2D(12, 1, name="rpn_bbox_pred")(shared)
    return keras.Model(feature, [logits, deltas], name="rpn_model")


def _model(num_classes: int = 3) -> keras.Model:
    """A miniature with matterport's names: backbone, shared RPN on two levels, heads."""
    image = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv1")(image)
    p2 = L.BatchNormalization(name="bn_conv1")(x)
    p3 = L.MaxPooling2D(name="fpn_p3")(p2)
    rpn = _rpn_model()
    outputs = [*rpn(p2), *rpn(p3)]
    pooled = L.GlobalAveragePooling2D()(p2)
    outputs.append(L.Dense(num_classes, name="mrcnn_class_logits")(pooled))
    outputs.append(L.Conv2DTranspose(2, 2, strides=2, name="mrcnn_mask_deconv")(p2))
    return keras.Model(image, outputs)


def _values(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: v.numpy() for v in model.weights}


def _matterport_layers(rng: np.random.Generator, num_classes: int = 3) -> dict:
    """Layer -> [(Keras 2 weight name, array)] as matterport's checkpoints store them."""

    def w(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    return {
        "conv1": [("conv1/kernel:0", w(3, 3, 3, 4)), ("conv1/bias:0", w(4))],
        "bn_conv1": [
            (f"bn_conv1/{n}:0", w(4)) for n in ("gamma", "beta", "moving_mean", "moving_variance")
        ],
        # deliberately not in the model's variable order: matching must use the names
        "rpn_model": [
            ("rpn_bbox_pred/kernel:0", w(1, 1, 8, 12)),
            ("rpn_bbox_pred/bias:0", w(12)),
            ("rpn_conv_shared/kernel:0", w(3, 3, 4, 8)),
            ("rpn_conv_shared/bias:0", w(8)),
            ("rpn_class_raw/kernel:0", w(1, 1, 8, 6)),
            ("rpn_class_raw/bias:0", w(6)),
        ],
        "mrcnn_class_logits": [
            ("mrcnn_class_logits/kernel:0", w(4, num_classes)),
            ("mrcnn_class_logits/bias:0", w(num_classes)),
        ],
        "mrcnn_mask_deconv": [
            ("mrcnn_mask_deconv/kernel:0", w(2, 2, 2, 4)),
            ("mrcnn_mask_deconv/bias:0", w(2)),
        ],
    }


def _write_keras2(path, layers: dict, *, model_weights: bool = False, as_bytes: bool = True):
    """Writes `layers` in Keras 2's HDF5 layout, as matterport's ModelCheckpoint did."""

    def names(items: list[str]) -> list:
        return [s.encode() for s in items] if as_bytes else items

    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_weights else f
        root.attrs["layer_names"] = names(["input_image", *layers, "mrcnn_bbox"])
        root.attrs["backend"] = "tensorflow"
        root.attrs["keras_version"] = "2.2.4"
        for layer in ("input_image", "mrcnn_bbox"):  # weightless layers have empty groups
            root.create_group(layer).attrs["weight_names"] = names([])
        for layer, weights in layers.items():
            group = root.create_group(layer)
            group.attrs["weight_names"] = names([n for n, _ in weights])
            for name, array in weights:
                group.create_dataset(name, data=array)
    return path


def _expected(layers: dict) -> dict[str, np.ndarray]:
    """Model variable path -> file array; sub-layer weight names equal variable paths."""
    return {name.removesuffix(":0"): a for weights in layers.values() for name, a in weights}


@pytest.mark.parametrize("model_weights", [False, True])
@pytest.mark.parametrize("as_bytes", [True, False])
def test_keras2_by_name_lands_in_the_right_variables(tmp_path, model_weights, as_bytes):
    layers = _matterport_layers(np.random.default_rng(0))
    path = _write_keras2(tmp_path / "m.h5", layers, model_weights=model_weights, as_bytes=as_bytes)
    model = _model()
    loaded = load_weights(model, path, by_name=True)
    assert loaded == list(layers)
    values = _values(model)
    for path_, array in _expected(layers).items():
        np.testing.assert_array_equal(values[path_], array, err_msg=path_)


def test_keras2_in_order_without_names(tmp_path):
    layers = _matterport_layers(np.random.default_rng(1))
    model = _model()
    load_weights(model, _write_keras2(tmp_path / "m.h5", layers), by_name=False)
    values = _values(model)
    for path_, array in _expected(layers).items():
        np.testing.assert_array_equal(values[path_], array)


def test_keras1_weight_names_fall_back_to_order(tmp_path):
    # The Keras-applications ResNet50 file predates Keras 2's `layer/kernel:0` names.
    rng = np.random.default_rng(2)
    kernel, bias = rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)
    path = _write_keras2(tmp_path / "r.h5", {"conv1": [("conv1_W:0", kernel), ("conv1_b:0", bias)]})
    model = _model()
    assert load_weights(model, path, by_name=True) == ["conv1"]
    np.testing.assert_allclose(_values(model)["conv1/kernel"], kernel, rtol=1e-6)
    np.testing.assert_allclose(_values(model)["conv1/bias"], bias, rtol=1e-6)


def test_exclude_leaves_head_untouched_with_other_class_count(tmp_path):
    layers = _matterport_layers(np.random.default_rng(3), num_classes=81)
    path = _write_keras2(tmp_path / "coco.h5", layers)
    model = _model(num_classes=3)
    before = _values(model)
    exclude = ["mrcnn_class_logits", "mrcnn_bbox"]  # mrcnn_bbox has no weights: fine
    loaded = load_weights(model, path, by_name=True, exclude=exclude)
    assert "mrcnn_class_logits" not in loaded and "rpn_model" in loaded
    after = _values(model)
    for name in ("mrcnn_class_logits/kernel", "mrcnn_class_logits/bias"):
        np.testing.assert_array_equal(after[name], before[name])
    expected = _expected(layers)["rpn_class_raw/bias"]
    np.testing.assert_array_equal(after["rpn_class_raw/bias"], expected)


def test_shape_mismatch_names_layer_and_changes_nothing(tmp_path):
    layers = _matterport_layers(np.random.default_rng(4), num_classes=81)
    path = _write_keras2(tmp_path / "coco.h5", layers)
    model = _model(num_classes=3)
    before = _values(model)
    with pytest.raises(ValueError, match=r"mrcnn_class_logits.*\(4, 81\).*\(4, 3\).*exclude="):
        load_weights(model, path, by_name=True)
    after = _values(model)
    for name, value in before.items():  # conv1 etc. come first in the file, yet are unchanged
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_weight_count_mismatch_raises(tmp_path):
    path = _write_keras2(tmp_path / "b.h5", {"conv1": [("conv1/kernel:0", np.zeros((3, 3, 3, 4)))]})
    with pytest.raises(ValueError, match=r"'conv1'.*1 weights.*2"):
        load_weights(_model(), path, by_name=True)


def test_extra_file_layers_skipped_by_name_but_an_error_in_order(tmp_path):
    rng = np.random.default_rng(5)
    layers = {
        "conv1": _matterport_layers(rng)["conv1"],
        "res2a_branch2a": [("res2a_branch2a/kernel:0", np.ones((1, 1, 4, 4), np.float32))],
    }
    path = _write_keras2(tmp_path / "imagenet.h5", layers)
    model = _model()
    before = _values(model)
    assert load_weights(model, path, by_name=True) == ["conv1"]
    after = _values(model)
    np.testing.assert_array_equal(after["conv1/bias"], layers["conv1"][1][1])
    np.testing.assert_array_equal(after["bn_conv1/gamma"], before["bn_conv1/gamma"])
    with pytest.raises(ValueError, match="2 layers with weights but the model has 5"):
        load_weights(_model(), path, by_name=False)


def test_keras3_round_trip(tmp_path):
    source, target = _model(), _model()
    path = tmp_path / "m.weights.h5"
    source.save_weights(path)
    assert "rpn_model" in load_weights(target, path)
    expected = _values(source)
    for name, value in _values(target).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_keras3_by_name_and_exclude(tmp_path):
    source = _model(num_classes=81)
    source.get_layer("bn_conv1").moving_variance.assign(np.full(4, 7.0))
    path = tmp_path / "coco.weights.h5"
    source.save_weights(path)
    target = _model(num_classes=3)
    before = _values(target)
    with pytest.raises(ValueError, match=r"mrcnn_class_logits.*exclude="):
        load_weights(target, path, by_name=True)
    loaded = load_weights(target, path, by_name=True, exclude=["mrcnn_class_logits"])
    assert set(loaded) == {"conv1", "bn_conv1", "rpn_model", "mrcnn_mask_deconv"}
    after, expected = _values(target), _values(source)
    np.testing.assert_array_equal(after["bn_conv1/moving_variance"], np.full(4, 7.0))
    np.testing.assert_array_equal(after["rpn_bbox_pred/kernel"], expected["rpn_bbox_pred/kernel"])
    name = "mrcnn_class_logits/bias"
    np.testing.assert_array_equal(after[name], before[name])


def test_keras3_file_with_layers_the_model_lacks(tmp_path):
    path = tmp_path / "m.weights.h5"
    _model().save_weights(path)
    image = keras.Input((8, 8, 3))
    small = keras.Model(image, L.Conv2D(4, 3, padding="same", name="conv1")(image))
    assert load_weights(small, path, by_name=True) == ["conv1"]
    with pytest.raises(ValueError, match="'bn_conv1', which the model lacks"):
        load_weights(small, path, exclude=["mrcnn_mask_deconv"])


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_weights(_model(), tmp_path / "nope.h5")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"this is not HDF5")
    with pytest.raises(ValueError, match="corrupt.h5"):
        load_weights(_model(), corrupt, by_name=True)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=[1, 2])
    with pytest.raises(ValueError, match="foreign.h5.*not a Keras weight file"):
        load_weights(_model(), foreign, by_name=True)
