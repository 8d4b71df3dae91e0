"""Training setup: layer freezing, staged train() calls, checkpoints, resume, optimizers, inputs."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from mrcnn.config import LOSS_NAMES, Config
from mrcnn.data import DataGenerator
from mrcnn.model import MaskRCNN
from mrcnn.network import TRAINING_INPUTS
from mrcnn.shapes import ShapesDataset
from mrcnn.training import WarmupSchedule, layers_regex, make_optimizer, set_trainable
from tests.mrcnn.conftest import TinyConfig

BACKBONE = re.compile(r"(conv1|bn_conv1|res\d.*|bn\d.*)")
HEADS = re.compile(r"(mrcnn_.*|rpn_.*|fpn_.*)")
# Anchors of a 64×64 image: feature maps 16², 8², 4², 2², 1² with 3 ratios each.
ANCHORS_64 = (16**2 + 8**2 + 4**2 + 2**2 + 1) * 3


def weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Every layer with weights by name, entering nested models (the shared `rpn_model`)."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.update(weighted_layers(layer))
        elif layer.weights:
            out[layer.name] = layer
    return out


def kernel(model: MaskRCNN, name: str) -> np.ndarray:
    return weighted_layers(model.keras_model)[name].weights[0].numpy()


def snapshot(model: MaskRCNN) -> dict[str, list[np.ndarray]]:
    return {
        name: [v.numpy() for v in layer.weights]
        for name, layer in weighted_layers(model.keras_model).items()
    }


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def training_model(tmp_path_factory) -> MaskRCNN:
    """matterport's SGD with 4 warmup steps (`training_run` trains it; warmup shows whether
    an optimizer goes on or starts anew)."""
    return MaskRCNN(
        "training", TinyConfig(WARMUP_STEPS=4), tmp_path_factory.mktemp("training_logs")
    )


# ---------------------------------------------------------------------------------- set_trainable
def test_heads_freezes_the_backbone(training_model):
    keras_model = training_model.keras_model
    names = set_trainable(keras_model, layers_regex("heads"))
    layers = weighted_layers(keras_model)
    for name, layer in layers.items():
        assert layer.trainable == bool(HEADS.fullmatch(name)), name
    assert {
        "rpn_conv_shared",
        "rpn_class_raw",
        "rpn_bbox_pred",
        "fpn_p5",
        "mrcnn_mask",
        "mrcnn_class_logits",
    } <= set(names)
    assert not any(BACKBONE.fullmatch(n) for n in names)
    trainable_ids = {id(v) for v in keras_model.trainable_weights}
    assert not any(
        id(v) in trainable_ids
        for name, layer in layers.items()
        if BACKBONE.fullmatch(name)
        for v in layer.weights
    )
    assert all(id(v) in trainable_ids for v in layers["rpn_conv_shared"].weights)


def test_stage_4_plus(training_model):
    set_trainable(training_model.keras_model, layers_regex("4+"))
    layers = weighted_layers(training_model.keras_model)
    for name in (
        "res4a_branch2a",
        "bn4a_branch1",
        "res4f_branch2c",
        "res5c_branch2c",
        "bn5c_branch2c",
        "fpn_c2p2",
        "rpn_class_raw",
        "mrcnn_mask_deconv",
    ):
        assert layers[name].trainable, name
    for name in ("conv1", "bn_conv1", "res2a_branch2a", "res3d_branch2c", "bn3a_branch1"):
        assert not layers[name].trainable, name


def test_all_and_custom_regex(training_model):
    keras_model = training_model.keras_model
    set_trainable(keras_model, layers_regex("all"))
    assert all(layer.trainable for layer in weighted_layers(keras_model).values())
    names = set_trainable(keras_model, layers_regex(r"mrcnn_mask.*"))
    expected = {
        "mrcnn_mask",
        "mrcnn_mask_deconv",
        *(f"mrcnn_mask_conv{i}" for i in range(1, 5)),
        *(f"mrcnn_mask_bn{i}" for i in range(1, 5)),
    }
    assert set(names) == expected
    assert not weighted_layers(keras_model)["rpn_conv_shared"].trainable


def test_invalid_layer_regex(training_model, shapes_dataset):
    with pytest.raises(ValueError, match="regex"):
        layers_regex("(mrcnn_")
    with pytest.raises(ValueError, match="regex"):
        training_model.train(shapes_dataset, None, 0.001, 1, layers="res[4")
    with pytest.raises(ValueError, match="matches no layer"):
        training_model.train(shapes_dataset, None, 0.001, 1, layers="no_such_layer")


def test_modes_guard_train_and_detect(inference_model, training_model, shapes_dataset):
    with pytest.raises(RuntimeError, match="training"):
        inference_model.train(shapes_dataset, None, 0.001, 1, "heads")
    with pytest.raises(RuntimeError, match="inference"):
        training_model.detect([np.zeros((64, 64, 3), np.uint8)])


# ---------------------------------------------------------------------------------- staged training
class OptimizerState(keras.callbacks.Callback):
    """The optimizer's variable count when training starts (before the first step runs)."""

    def on_train_begin(self, logs=None):
        self.slots = len(self.model.optimizer.variables)


@pytest.fixture(scope="module")
def training_run(training_model, shapes_dataset) -> SimpleNamespace:
    """heads to epoch 1 (lr 0.002), heads again to epoch 3 (lr 0.004), then all to epoch 4
    (lr 0.001): one step per epoch. Two compiled steps serve every test of this section."""
    model = training_model
    run = SimpleNamespace(initial=snapshot(model), state=OptimizerState())
    model.train(
        shapes_dataset,
        None,
        learning_rate=0.002,
        epochs=1,
        layers="heads",
        custom_callbacks=[run.state],
        verbose=0,
    )
    run.after_heads, run.epoch_heads = snapshot(model), model.epoch
    run.files_heads = sorted(os.listdir(model.log_dir))
    run.lr_heads = float(model.keras_model.optimizer.learning_rate)
    run.trainable_heads = len(model.keras_model.trainable_variables)
    run.slots_after_first_step = len(model.keras_model.optimizer.variables)
    run.step, run.optimizer = model.keras_model.train_function, model.keras_model.optimizer
    model.train(shapes_dataset, None, learning_rate=0.004, epochs=3, layers="heads", verbose=0)
    run.step_again, run.optimizer_again = (
        model.keras_model.train_function,
        model.keras_model.optimizer,
    )
    run.iterations_again = int(run.optimizer_again.iterations)
    run.lr_again = float(run.optimizer_again.learning_rate)
    run.history_all = model.train(
        shapes_dataset, None, learning_rate=0.001, epochs=4, layers="all", verbose=0
    )
    run.final, run.lr_all = snapshot(model), float(model.keras_model.optimizer.learning_rate)
    run.optimizer_all = model.keras_model.optimizer
    run.iterations_all = int(run.optimizer_all.iterations)
    return run


def test_heads_stage_changes_only_heads(training_run):
    changed = {
        name
        for name, values in training_run.after_heads.items()
        if not same(values, training_run.initial[name])
    }
    assert not {name for name in changed if BACKBONE.fullmatch(name)}, (
        "backbone weights must stay bit-identical"
    )
    # Layers with a gradient in the first step. The box and mask heads get none yet: no random
    # proposal reaches IoU 0.5 with a ground-truth box, and (as in matterport) no positive
    # ROI means no sampled ROI at all.
    for name in (
        "rpn_conv_shared",
        "rpn_class_raw",
        "rpn_bbox_pred",
        "fpn_c5p5",
        "fpn_p2",
        "mrcnn_class_conv1",
        "mrcnn_class_logits",
    ):
        assert name in changed, name
    # TRAIN_BN=False: the heads' batch norms keep their moving statistics.
    bn = training_run.initial["mrcnn_mask_bn1"], training_run.after_heads["mrcnn_mask_bn1"]
    assert same(bn[0][2:], bn[1][2:])


def test_heads_stage_checkpoint_and_epoch(training_run):
    assert training_run.epoch_heads == 1
    assert "mask_rcnn_tiny_0001.weights.h5" in training_run.files_heads
    assert "mask_rcnn_tiny_0002.weights.h5" not in training_run.files_heads
    # One of four warmup steps taken: the rate is (1 + 1) / 4 of 0.002.
    np.testing.assert_allclose(training_run.lr_heads, 0.001, rtol=1e-6)


def test_all_stage_runs_one_more_epoch(training_model, training_run):
    assert training_run.history_all.epoch == [3]
    assert training_model.epoch == 4
    # A new optimizer for the new layers: its warmup starts again, one step into it.
    np.testing.assert_allclose(training_run.lr_all, 0.0005, rtol=1e-6)
    assert not same(training_run.final["conv1"], training_run.after_heads["conv1"]), (
        "'all' must train the backbone"
    )
    log_dir = Path(training_model.log_dir)
    assert re.fullmatch(r"tiny\d{8}T\d{4}", log_dir.name)
    assert {f"mask_rcnn_tiny_000{epoch}.weights.h5" for epoch in range(1, 5)} <= set(
        os.listdir(log_dir)
    )
    with open(log_dir / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    for name in ("loss", *LOSS_NAMES):
        assert all(math.isfinite(float(r[name])) for r in rows), name
    saved = Config.from_dict(json.loads((log_dir / "config.json").read_text()))
    assert saved.to_dict() == training_model.config.to_dict()


def test_training_the_same_layers_again_keeps_the_step_and_the_optimizer(training_run):
    """matterport's scripts call train() every few epochs: no new trace, no new optimizer (its
    moments and warmup go on); only the rate changes. Other layers compile anew."""
    assert training_run.step_again is training_run.step
    assert training_run.optimizer_again is training_run.optimizer
    assert training_run.iterations_again == 3  # one step per epoch, counted across the calls
    np.testing.assert_allclose(training_run.lr_again, 0.004, rtol=1e-6)  # warmed up
    assert training_run.optimizer_all is not training_run.optimizer
    assert training_run.iterations_all == 1


def test_the_optimizer_is_built_before_the_first_step_is_traced(training_run):
    """Variables created inside the traced step would make TensorFlow trace it twice."""
    # SGD's momentum for every trainable variable, before the step
    assert training_run.state.slots >= training_run.trainable_heads
    assert training_run.slots_after_first_step == training_run.state.slots  # none created by it


def test_find_last_and_resume(training_model, training_run):
    last = training_model.find_last()
    assert last == os.path.join(training_model.log_dir, "mask_rcnn_tiny_0004.weights.h5")
    resumed = MaskRCNN("training", TinyConfig(SEED=1), training_model.model_dir)
    assert resumed.epoch == 0 and not np.array_equal(
        kernel(resumed, "conv1"), training_run.final["conv1"][0]
    )
    resumed.load_weights(last)
    assert resumed.epoch == 4
    assert resumed.log_dir == training_model.log_dir
    assert resumed.checkpoint_path.startswith(training_model.log_dir)
    for name in ("conv1", "rpn_conv_shared", "mrcnn_mask"):
        np.testing.assert_array_equal(
            kernel(resumed, name), training_run.final[name][0], err_msg=name
        )


def test_training_checkpoint_loads_into_inference_model(training_model, training_run, tmp_path):
    model = MaskRCNN("inference", TinyConfig(SEED=1), tmp_path)
    loaded = model.load_weights(training_model.find_last(), by_name=True)
    assert {"conv1", "rpn_model", "mrcnn_class_logits", "mrcnn_mask"} <= set(loaded)
    for name in ("conv1", "res5c_branch2c", "rpn_conv_shared", "mrcnn_class_logits", "mrcnn_mask"):
        np.testing.assert_array_equal(
            kernel(model, name), training_run.final[name][0], err_msg=name
        )
    moving_variance = weighted_layers(model.keras_model)["mrcnn_class_bn1"].weights[3].numpy()
    np.testing.assert_array_equal(moving_variance, training_run.final["mrcnn_class_bn1"][3])


def test_find_last_without_checkpoints(inference_model):
    with pytest.raises(FileNotFoundError, match="tiny"):
        inference_model.find_last()


# ---------------------------------------------------------------------------------- optimizers
def test_sgd_is_matterports_with_global_clip():
    optimizer = make_optimizer(TinyConfig(), 0.01)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == 0.9
    assert optimizer.global_clipnorm == 5.0 and optimizer.clipnorm is None
    np.testing.assert_allclose(float(optimizer.learning_rate), 0.01, rtol=1e-6)
    assert make_optimizer(TinyConfig(GRADIENT_CLIP_NORM=None), 0.01).global_clipnorm is None


def test_adamw_decays_kernels_but_not_biases():
    optimizer = make_optimizer(TinyConfig(OPTIMIZER="adamw", WEIGHT_DECAY=0.5), 0.1)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.global_clipnorm == 5.0
    weights = keras.Variable(np.ones(3, np.float32), name="kernel")
    bias = keras.Variable(np.ones(3, np.float32), name="bias")
    # A zero gradient leaves only the decoupled decay: w -= lr * decay * w = 1 - 0.1 * 0.5.
    optimizer.apply_gradients([(np.zeros(3, np.float32), weights), (np.zeros(3, np.float32), bias)])
    np.testing.assert_allclose(weights.numpy(), 0.95, rtol=1e-6)
    np.testing.assert_array_equal(bias.numpy(), 1.0)


def test_warmup_ramps_linearly_then_holds():
    optimizer = make_optimizer(TinyConfig(WARMUP_STEPS=4), 0.01)
    np.testing.assert_allclose(float(optimizer.learning_rate), 0.01 / 4, rtol=1e-6)
    for step, rate in ((1, 0.005), (3, 0.01), (100, 0.01)):
        optimizer.iterations.assign(step)
        np.testing.assert_allclose(float(optimizer.learning_rate), rate, rtol=1e-6)
    schedule = WarmupSchedule(0.01, 4)
    assert WarmupSchedule(**schedule.get_config()).get_config() == {"rate": 0.01, "warmup_steps": 4}
    schedule.set_rate(0.002)  # what a compiled step reads next
    np.testing.assert_allclose(float(schedule(100)), 0.002, rtol=1e-6)


# ---------------------------------------------------------------------------------- DataGenerator
def test_batch_keys_shapes_and_dtypes(shapes_dataset):
    config = TinyConfig()
    generator = DataGenerator(shapes_dataset, config, seed=3)
    assert len(generator) == 2  # ceil(4 images / batch 2) without `steps`
    assert len(DataGenerator(shapes_dataset, config, steps=5, seed=3)) == 5
    batch = generator[0]
    assert set(batch) == set(TRAINING_INPUTS)
    expected = {
        "input_image": ((2, 64, 64, 3), np.float32),
        "input_image_meta": ((2, config.IMAGE_META_SIZE), np.float32),
        "input_rpn_match": ((2, ANCHORS_64), np.int32),
        "input_rpn_bbox": ((2, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
        "input_gt_class_ids": ((2, 4), np.int32),
        "input_gt_boxes": ((2, 4, 4), np.float32),
        "input_gt_masks": ((2, 56, 56, 4), np.uint8),
    }
    for key, (shape, dtype) in expected.items():
        assert batch[key].shape == shape and batch[key].dtype == dtype, key
    meta = batch["input_image_meta"]
    np.testing.assert_array_equal(meta[:, 1:4], [[64, 64, 3]] * 2)  # original shape
    np.testing.assert_array_equal(meta[:, 12:], 1)  # every class is active for the shapes source


def test_ground_truth_is_zero_padded(shapes_dataset):
    batch = DataGenerator(shapes_dataset, TinyConfig(), seed=3)[0]
    for i in range(2):
        image_id = int(batch["input_image_meta"][i, 0])
        _, class_ids = shapes_dataset.load_mask(image_id)
        n = len(class_ids)
        np.testing.assert_array_equal(
            np.sort(batch["input_gt_class_ids"][i, :n]), np.sort(class_ids)
        )
        assert (batch["input_gt_class_ids"][i, n:] == 0).all()
        assert (batch["input_gt_boxes"][i, n:] == 0).all() and not batch["input_gt_masks"][
            i, :, :, n:
        ].any()
        boxes = batch["input_gt_boxes"][i, :n]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert batch["input_gt_masks"][i, :, :, :n].any(axis=(0, 1)).all()


def test_rpn_targets_sample_256_anchors(shapes_dataset):
    batch = DataGenerator(shapes_dataset, TinyConfig(), seed=3)[0]
    for match, deltas in zip(batch["input_rpn_match"], batch["input_rpn_bbox"]):
        assert set(np.unique(match)) <= {-1, 0, 1}
        positives = int((match == 1).sum())
        assert 1 <= positives <= 128
        assert int((match != 0).sum()) == 256  # negatives fill up to RPN_TRAIN_ANCHORS_PER_IMAGE
        # One delta row per positive anchor, then zero padding.
        assert np.abs(deltas[:positives]).sum(axis=1).min() > 0
        assert not deltas[positives:].any()


def test_batches_are_deterministic_per_seed(shapes_dataset):
    config = TinyConfig()
    first = DataGenerator(shapes_dataset, config, seed=3)[1]
    again = DataGenerator(shapes_dataset, config, seed=3)[1]
    other = DataGenerator(shapes_dataset, config, seed=4)[1]
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert any(not np.array_equal(first[key], other[key]) for key in first)


def test_instances_beyond_max_gt_are_subsampled(shapes_dataset):
    # Image 3 of the fixture dataset holds three shapes; only two fit.
    assert len(shapes_dataset.load_mask(3)[1]) == 3
    batch = DataGenerator(shapes_dataset, TinyConfig(MAX_GT_INSTANCES=2), shuffle=False, seed=0)[1]
    assert batch["input_image_meta"][1, 0] == 3
    assert batch["input_gt_class_ids"].shape == (2, 2) and batch["input_gt_masks"].shape[-1] == 2
    assert (batch["input_gt_class_ids"][1] > 0).all()


def test_empty_dataset_is_rejected():
    empty = ShapesDataset()
    empty.load_shapes(0, 64, 64)
    empty.prepare()
    with pytest.raises(ValueError, match="no images"):
        DataGenerator(empty, TinyConfig())
