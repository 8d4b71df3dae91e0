"""Initial weights and batch-norm momentum for training from scratch (`mrcnn.initialization`)."""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn.layers.batch_norm import BatchNorm
from mrcnn.model import MaskRCNN
from tests.mrcnn.conftest import TinyConfig
from tests.mrcnn.test_training_setup import weighted_layers


@pytest.fixture(scope="module")
def torchvision_init(tmp_path_factory) -> MaskRCNN:
    config = TinyConfig(WEIGHT_INIT="torchvision", BATCH_NORM_MOMENTUM=0.97, TRAIN_BN=True)
    return MaskRCNN("training", config, tmp_path_factory.mktemp("init_logs"))


@pytest.fixture(scope="module")
def keras_init(tmp_path_factory) -> MaskRCNN:
    return MaskRCNN("training", TinyConfig(), tmp_path_factory.mktemp("init_logs"))


def kernel_std(model: MaskRCNN, name: str) -> float:
    return float(weighted_layers(model.keras_model)[name].weights[0].numpy().std())


@pytest.mark.parametrize(
    "name, expected",
    [
        # kaiming normal, fan-out: sqrt(2 / (k·k·filters))
        ("res3a_branch2b", np.sqrt(2 / (3 * 3 * 128))),
        ("mrcnn_mask_conv1", np.sqrt(2 / (3 * 3 * 256))),
        # kaiming uniform with a=1: variance 1 / fan-in
        ("fpn_p3", np.sqrt(1 / (3 * 3 * 256))),
        # PyTorch's Linear default: variance 1 / (3 fan-in); the box head's fc6 sees 7·7·256 inputs
        ("mrcnn_class_conv1", np.sqrt(1 / (3 * 7 * 7 * 256))),
        ("rpn_conv_shared", 0.01),
    ],
)
def test_torchvision_scheme_draws_each_role_at_its_scale(torchvision_init, name, expected):
    assert kernel_std(torchvision_init, name) == pytest.approx(expected, rel=0.05)


def test_keras_scheme_keeps_glorot_uniform(keras_init):
    # glorot uniform: variance 2 / (fan-in + fan-out) = 2 / (9·128 + 9·128)
    assert kernel_std(keras_init, "res3a_branch2b") == pytest.approx(
        np.sqrt(1 / (9 * 128)), rel=0.05
    )
    # 3×3 from 256 to 512 channels: 2 / (9·256 + 9·512), not torchvision's 0.01
    assert kernel_std(keras_init, "rpn_conv_shared") == pytest.approx(
        np.sqrt(2 / (9 * 768)), rel=0.05
    )


def test_batch_norm_momentum_reaches_every_batch_norm(torchvision_init, keras_init):
    def momenta(model: MaskRCNN) -> set[float]:
        return {
            layer.momentum
            for layer in weighted_layers(model.keras_model).values()
            if isinstance(layer, BatchNorm)
        }

    assert momenta(torchvision_init) == {0.97}
    assert momenta(keras_init) == {0.9}  # the default


def test_moving_statistics_follow_the_momentum(torchvision_init):
    """A training-mode call moves the moving mean (1 - momentum) of the way to the batch mean."""
    layer = weighted_layers(torchvision_init.keras_model)["bn_conv1"]
    x = (
        np.random.default_rng(0)
        .normal(3.0, 1.0, size=(2, 8, 8, layer.moving_mean.shape[0]))
        .astype("float32")
    )
    before = layer.moving_mean.numpy().copy()
    layer(x, training=True)
    expected = 0.97 * before + 0.03 * x.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(layer.moving_mean.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"WEIGHT_INIT": "he"}, "WEIGHT_INIT must be one of"),
        ({"BATCH_NORM_MOMENTUM": 1.0}, "BATCH_NORM_MOMENTUM must be in"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TinyConfig(**settings)
