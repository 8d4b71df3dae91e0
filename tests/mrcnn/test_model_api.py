"""MaskRCNN facade: matterport's layer names and shapes, detect() contract, weight files."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.model import MaskRCNN
from tests.mrcnn.conftest import FIXED_SCORE, TinyConfig, fix_class_head

HEAD_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
STAGE_BLOCKS = {"resnet50": {2: 3, 3: 4, 4: 6, 5: 3}, "resnet101": {2: 3, 3: 4, 4: 23, 5: 3}}


def matterport_shapes(num_classes: int) -> dict[str, list[tuple]]:
    """Weight shapes (kernel, bias / BN gamma, beta, mean, variance) from matterport's files."""
    nc = num_classes
    shapes = {
        "conv1": [(7, 7, 3, 64), (64,)],
        "bn_conv1": [(64,)] * 4,
        "res2a_branch2a": [(1, 1, 64, 64), (64,)],
        "res2a_branch2b": [(3, 3, 64, 64), (64,)],
        "res2a_branch2c": [(1, 1, 64, 256), (256,)],
        "res2a_branch1": [(1, 1, 64, 256), (256,)],
        "res3a_branch2a": [(1, 1, 256, 128), (128,)],
        "res4a_branch2a": [(1, 1, 512, 256), (256,)],
        "res5a_branch2a": [(1, 1, 1024, 512), (512,)],
        "bn5c_branch2c": [(2048,)] * 4,
        "fpn_c5p5": [(1, 1, 2048, 256), (256,)],
        "fpn_c4p4": [(1, 1, 1024, 256), (256,)],
        "fpn_c3p3": [(1, 1, 512, 256), (256,)],
        "fpn_c2p2": [(1, 1, 256, 256), (256,)],
        "mrcnn_class_conv1": [(7, 7, 256, 1024), (1024,)],
        "mrcnn_class_bn1": [(1024,)] * 4,
        "mrcnn_class_conv2": [(1, 1, 1024, 1024), (1024,)],
        "mrcnn_class_bn2": [(1024,)] * 4,
        "mrcnn_class_logits": [(1024, nc), (nc,)],
        "mrcnn_bbox_fc": [(1024, 4 * nc), (4 * nc,)],
        "mrcnn_mask_deconv": [(2, 2, 256, 256), (256,)],
        "mrcnn_mask": [(1, 1, 256, nc), (nc,)],
    }
    for level in range(2, 6):
        shapes[f"fpn_p{level}"] = [(3, 3, 256, 256), (256,)]
    for i in range(1, 5):
        shapes[f"mrcnn_mask_conv{i}"] = [(3, 3, 256, 256), (256,)]
        shapes[f"mrcnn_mask_bn{i}"] = [(256,)] * 4
    return shapes


RPN_SHAPES = {
    "rpn_conv_shared": [(3, 3, 256, 512), (512,)],
    "rpn_class_raw": [(1, 1, 512, 6), (6,)],
    "rpn_bbox_pred": [(1, 1, 512, 12), (12,)],
}


def backbone_names(architecture: str) -> set[str]:
    names = {"conv1", "bn_conv1"}
    for stage, blocks in STAGE_BLOCKS[architecture].items():
        for block in (chr(ord("a") + i) for i in range(blocks)):
            branches = ("2a", "2b", "2c", "1") if block == "a" else ("2a", "2b", "2c")
            names |= {f"{kind}{stage}{block}_branch{b}" for kind in ("res", "bn") for b in branches}
    return names


def shapes_of(layer: keras.layers.Layer) -> list[tuple]:
    return [tuple(v.shape) for v in layer.weights]


def sample_images(seed: int = 0) -> list[np.ndarray]:
    """Two non-square RGB images: one wide, one tall."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (50, 90, 3), dtype=np.uint8),
        rng.integers(0, 256, (70, 40, 3), dtype=np.uint8),
    ]


def assert_same_detections(got: dict, expected: dict) -> None:
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


# ---------------------------------------------------------------------------------- construction
def test_mode_and_config_are_validated(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        MaskRCNN("train", TinyConfig(), tmp_path)
    with pytest.raises(TypeError, match="Config"):
        MaskRCNN("inference", {"NAME": "tiny"}, tmp_path)


def test_layer_names_follow_matterport(inference_model):
    model = inference_model.keras_model
    names = {layer.name for layer in model.layers}
    assert backbone_names("resnet50") <= names
    assert "res4f_branch2c" in names and "res4g_branch2a" not in names
    expected = {
        "fpn_c5p5",
        "fpn_c4p4",
        "fpn_c3p3",
        "fpn_c2p2",
        "fpn_p2",
        "fpn_p3",
        "fpn_p4",
        "fpn_p5",
        "fpn_p6",
        "rpn_model",
        "mrcnn_class_conv1",
        "mrcnn_class_bn1",
        "mrcnn_class_conv2",
        "mrcnn_class_bn2",
        "mrcnn_class_logits",
        "mrcnn_bbox_fc",
        "mrcnn_mask_deconv",
        "mrcnn_mask",
        "mrcnn_detection",
        *(f"mrcnn_mask_conv{i}" for i in range(1, 5)),
        *(f"mrcnn_mask_bn{i}" for i in range(1, 5)),
    }
    assert expected <= names, sorted(expected - names)
    rpn = model.get_layer("rpn_model")
    assert isinstance(rpn, keras.Model)
    assert {"rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"} <= {
        layer.name for layer in rpn.layers
    }
    assert [v.name for v in model.get_layer("bn_conv1").weights] == [
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
    ]


def test_weight_shapes_follow_matterport(inference_model):
    model = inference_model.keras_model
    for name, shapes in matterport_shapes(TinyConfig.NUM_CLASSES).items():
        assert shapes_of(model.get_layer(name)) == shapes, name
    rpn = model.get_layer("rpn_model")
    for name, shapes in RPN_SHAPES.items():
        assert shapes_of(rpn.get_layer(name)) == shapes, name


@pytest.mark.parametrize(
    "backbone, expected", [("resnet50", 45_088_120), ("resnet101", 64_158_584)]
)
def test_parameter_count_matches_matterport_coco(backbone, expected, tmp_path):
    model = MaskRCNN(
        "inference", Config(NAME="coco", NUM_CLASSES=81, BACKBONE=backbone), tmp_path
    ).keras_model
    names = {layer.name for layer in model.layers}
    assert backbone_names(backbone) <= names
    if backbone == "resnet101":
        assert "res4w_branch2c" in names and "res4x_branch2a" not in names
    wrong = {
        name: (shapes_of(model.get_layer(name)), shapes)
        for name, shapes in matterport_shapes(81).items()
        if shapes_of(model.get_layer(name)) != shapes
    }
    per_layer = {layer.name: layer.count_params() for layer in model.layers if layer.weights}
    assert model.count_params() == expected, (
        f"differs by {model.count_params() - expected}; {wrong}; {per_layer}"
    )


# ---------------------------------------------------------------------------------- detect()
def test_detect_contract_on_non_square_images(inference_model):
    images = sample_images()
    results = inference_model.detect(images)
    assert len(results) == 2
    for image, result in zip(images, results):
        assert set(result) == {"rois", "class_ids", "scores", "masks"}
        rois, class_ids, scores, masks = (
            result["rois"],
            result["class_ids"],
            result["scores"],
            result["masks"],
        )
        n = len(class_ids)
        assert n >= 1
        assert rois.dtype == np.int32 and class_ids.dtype == np.int32
        assert scores.dtype == np.float32 and masks.dtype == bool
        assert rois.shape == (n, 4) and scores.shape == (n,)
        assert masks.shape == (*image.shape[:2], n), "masks must be at the original image size"
        height, width = image.shape[:2]
        assert (rois[:, 0] >= 0).all() and (rois[:, 1] >= 0).all()
        assert (rois[:, 2] <= height).all() and (rois[:, 3] <= width).all()
        assert (rois[:, 2] > rois[:, 0]).all() and (rois[:, 3] > rois[:, 1]).all()
        # The fixed head makes every ROI class 1 with the same softmax score.
        np.testing.assert_array_equal(class_ids, 1)
        np.testing.assert_allclose(scores, FIXED_SCORE, rtol=1e-5)
        for i, (y1, x1, y2, x2) in enumerate(rois):
            outside = masks[:, :, i].copy()
            outside[y1:y2, x1:x2] = False
            assert not outside.any(), f"mask {i} reaches outside its box {rois[i]}"


def test_detect_runs_any_number_of_images_in_batches(inference_model):
    a, b = sample_images()
    c = np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert inference_model.config.BATCH_SIZE == 2
    results = inference_model.detect([a, b, c])
    assert [r["masks"].shape[:2] for r in results] == [(50, 90), (70, 40), (64, 64)]
    # Each image's result does not depend on the batch it ran in.
    assert_same_detections(results[2], inference_model.detect([c])[0])
    assert_same_detections(results[0], inference_model.detect([a, b])[0])
    assert inference_model.detect([]) == []


def test_a_model_trained_on_crops_detects_whole_images_of_any_size_in_one_batch(tmp_path):
    """IMAGE_RESIZE_MODE "crop" is for training: inference pads whole images to multiples of
    64 (pad64), and a batch of different sizes is padded to its largest at bottom and right."""
    from mrcnn.model import mold_inputs

    config = TinyConfig(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=64)
    rng = np.random.default_rng(7)
    wide, tall = (
        rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((64, 150, 3), (130, 70, 3))
    )
    molded, metas, windows = mold_inputs(config, [wide, tall])
    assert molded.shape == (2, 192, 192, 3)  # 64×192 and 192×128, padded to one size
    np.testing.assert_array_equal(windows, [[0, 21, 64, 171], [31, 29, 161, 99]])
    np.testing.assert_array_equal(metas[:, 4:7], [[192, 192, 3]] * 2)  # the molded shape
    alone, _, _ = mold_inputs(config, [wide])
    np.testing.assert_array_equal(molded[0, :64, :192], alone[0])
    np.testing.assert_allclose(molded[0, 64:], -np.broadcast_to(config.MEAN_PIXEL, (128, 192, 3)))
    model = MaskRCNN("inference", config, tmp_path)
    fix_class_head(model)
    results = model.detect([wide, tall])
    assert [r["masks"].shape[:2] for r in results] == [(64, 150), (130, 70)]
    assert all(len(r["class_ids"]) >= 1 for r in results)


def test_detect_accepts_grayscale(inference_model):
    gray = np.random.default_rng(3).integers(0, 256, (48, 64), dtype=np.uint8)
    result = inference_model.detect([gray])[0]
    assert result["masks"].shape[:2] == (48, 64)
    assert_same_detections(result, inference_model.detect([np.stack([gray] * 3, axis=-1)])[0])


@pytest.mark.parametrize("shape", [(32, 32, 4), (32, 32, 1), (32,), (1, 32, 32, 3)])
def test_detect_rejects_bad_image_shapes(inference_model, shape):
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        inference_model.detect([np.zeros(shape, np.uint8)])


def test_detect_does_not_retrace(inference_model):
    a, b = sample_images()
    inference_model.detect([a, b])
    inference_model.detect([b])
    inference_model.detect([a, b, a])
    assert inference_model._predict_fn().experimental_get_tracing_count() == 1


@pytest.mark.parametrize("pyramid", [None, 32])
def test_detect_empty_result_shapes(tmp_path, pyramid):
    # Every ROI scores FIXED_SCORE ≈ 0.81, below this threshold, so nothing is kept. With FPN
    # maps narrower than the mask head's 256 channels, an empty mask batch once failed.
    settings = {"TOP_DOWN_PYRAMID_SIZE": pyramid} if pyramid else {}
    model = MaskRCNN("inference", TinyConfig(DETECTION_MIN_CONFIDENCE=0.9, **settings), tmp_path)
    fix_class_head(model)
    images = sample_images()
    for image, result in zip(images, model.detect(images)):
        assert result["rois"].shape == (0, 4) and result["rois"].dtype == np.int32
        assert result["class_ids"].shape == (0,) and result["class_ids"].dtype == np.int32
        assert result["scores"].shape == (0,) and result["scores"].dtype == np.float32
        assert result["masks"].shape == (*image.shape[:2], 0) and result["masks"].dtype == bool


def test_detect_rejects_a_bare_image_instead_of_a_list(inference_model):
    with pytest.raises(ValueError, match="list of"):
        inference_model.detect(np.zeros((4, 4, 3), np.uint8))


def test_detect_rejects_an_empty_image(inference_model):
    with pytest.raises(ValueError, match="non-empty"):
        inference_model.detect([np.zeros((0, 10, 3), np.uint8)])


# ---------------------------------------------------------------------------------- weight files
def test_checkpoint_round_trip_gives_identical_detections(inference_model, tmp_path):
    images = sample_images(seed=7)
    expected = inference_model.detect(images)
    path = tmp_path / "tiny.weights.h5"
    inference_model.save_weights(path)
    other = MaskRCNN("inference", TinyConfig(SEED=1), tmp_path)
    kernel = inference_model.keras_model.get_layer("conv1").get_weights()[0]
    assert not np.array_equal(other.keras_model.get_layer("conv1").get_weights()[0], kernel)
    loaded = other.load_weights(path)
    assert {"conv1", "rpn_model", "mrcnn_class_logits", "mrcnn_mask"} <= set(loaded)
    for got, want in zip(other.detect(images), expected):
        assert_same_detections(got, want)


def test_save_weights_needs_keras3_suffix(inference_model, tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        inference_model.save_weights(tmp_path / "tiny.h5")


def test_load_weights_missing_file(inference_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        inference_model.load_weights(tmp_path / "missing.h5", by_name=True)


def write_matterport_h5(
    path, model: keras.Model, num_classes: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write `model`'s layers in matterport's Keras 2 layout, with heads for `num_classes`.

    Layout as `ModelCheckpoint(save_weights_only=True)` wrote it: root attribute `layer_names`
    (bytes), each layer a group with `weight_names` (bytes), datasets `/<layer>/<layer>/kernel:0`,
    and the nested RPN as `/rpn_model/rpn_conv_shared/kernel:0`. Returns dataset path → array.
    """
    rng = np.random.default_rng(seed)
    head_shapes = {
        name: shapes
        for name, shapes in matterport_shapes(num_classes).items()
        if name in HEAD_LAYERS
    }
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            if isinstance(layer, keras.Model):
                weights = [
                    (f"{sub.name}/{v.name}:0", tuple(v.shape))
                    for sub in layer.layers
                    for v in sub.weights
                ]
            else:
                shapes = head_shapes.get(layer.name, shapes_of(layer))
                weights = [
                    (f"{layer.name}/{v.name}:0", shape) for v, shape in zip(layer.weights, shapes)
                ]
            # Keras 2 stored an empty float array for layers without weights.
            group.attrs["weight_names"] = (
                [n.encode() for n, _ in weights] if weights else np.zeros(0)
            )
            for name, shape in weights:
                arrays[f"{layer.name}/{name}"] = rng.standard_normal(shape, dtype=np.float32)
                group.create_dataset(name, data=arrays[f"{layer.name}/{name}"])
    return arrays


def test_matterport_h5_loads_by_name_with_exclude(tmp_path):
    model = MaskRCNN("inference", TinyConfig(), tmp_path)
    keras_model = model.keras_model
    path = tmp_path / "mask_rcnn_coco.h5"
    arrays = write_matterport_h5(path, keras_model, num_classes=81)
    assert "rpn_model/rpn_conv_shared/kernel:0" in arrays and "conv1/conv1/kernel:0" in arrays
    before = {v.path: v.numpy() for v in keras_model.weights}

    # The 81-class heads do not fit a 4-class model: a clear error, and nothing is changed.
    with pytest.raises(ValueError, match="mrcnn_class_logits"):
        model.load_weights(path, by_name=True)
    assert all(np.array_equal(v.numpy(), before[v.path]) for v in keras_model.weights)

    loaded = model.load_weights(path, by_name=True, exclude=HEAD_LAYERS)
    assert not set(loaded) & set(HEAD_LAYERS)
    assert {
        "conv1",
        "bn_conv1",
        "res4f_branch2c",
        "fpn_c5p5",
        "rpn_model",
        "mrcnn_class_conv1",
        "mrcnn_mask_deconv",
    } <= set(loaded)
    get = keras_model.get_layer
    np.testing.assert_array_equal(get("conv1").weights[0].numpy(), arrays["conv1/conv1/kernel:0"])
    np.testing.assert_array_equal(
        get("res4f_branch2c").weights[0].numpy(), arrays["res4f_branch2c/res4f_branch2c/kernel:0"]
    )
    np.testing.assert_array_equal(
        get("bn_conv1").weights[3].numpy(), arrays["bn_conv1/bn_conv1/moving_variance:0"]
    )
    np.testing.assert_array_equal(
        get("mrcnn_class_conv1").weights[0].numpy(),
        arrays["mrcnn_class_conv1/mrcnn_class_conv1/kernel:0"],
    )
    rpn = get("rpn_model")
    np.testing.assert_array_equal(
        rpn.get_layer("rpn_conv_shared").weights[0].numpy(),
        arrays["rpn_model/rpn_conv_shared/kernel:0"],
    )
    np.testing.assert_array_equal(
        rpn.get_layer("rpn_bbox_pred").weights[1].numpy(), arrays["rpn_model/rpn_bbox_pred/bias:0"]
    )
    for name in ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"):
        for v in get(name).weights:
            np.testing.assert_array_equal(
                v.numpy(), before[v.path], err_msg=f"{name} must be left untouched"
            )
