"""Data-parallel training (`mrcnn.distribute`): two mirrored replicas step like one device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.distribute import ensure_cpu_devices, replica_devices, training_strategy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_mirrored_replicas_take_the_same_step_as_one_device():
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.mirrored_step"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["replicas"], result["single_replicas"]) == (2, 1)
    single, mirrored = result["losses"]["single"], result["losses"]["mirrored"]
    # The logged losses are means over the global batch, not sums over replicas.
    for name in ("loss", "rpn_class_loss", "rpn_bbox_loss"):
        assert mirrored[name] == pytest.approx(single[name], rel=1e-4), name
    # The step moved the weights, and both runs moved them the same way: the replicas'
    # gradients were all-reduced and each replica's loss was scaled by 1/2.
    assert result["step_size"] > 1e-3
    assert result["difference"] < 1e-3 * result["step_size"]


def test_one_gpu_needs_no_strategy():
    config = Config(NAME="one", NUM_CLASSES=2)
    assert replica_devices(config) is None
    assert training_strategy(config) is tf.distribute.get_strategy()


def test_more_gpus_than_visible_is_a_clear_error():
    count = len(tf.config.list_logical_devices("GPU")) + 2  # >= 2: one GPU needs no strategy
    with pytest.raises(
        ValueError, match=f"GPU_COUNT={count} asks for {count} GPUs, but TensorFlow sees"
    ):
        replica_devices(Config(NAME="many", NUM_CLASSES=2, GPU_COUNT=count))


@pytest.mark.parametrize("devices", [["/gpu:0"], ["/gpu:0", "gpu zero"], "/gpu:0,/gpu:1", [0, 1]])
def test_training_devices_are_validated(devices):
    with pytest.raises(ValueError, match="TRAINING_DEVICES must list GPU_COUNT"):
        Config(NAME="bad", NUM_CLASSES=2, GPU_COUNT=2, TRAINING_DEVICES=devices)


def test_device_names_in_every_spelling_are_accepted():
    names = ["/gpu:0", "/device:GPU:1", "/job:localhost/replica:0/task:0/device:CPU:0"]
    assert (
        Config(NAME="ok", NUM_CLASSES=2, GPU_COUNT=3, TRAINING_DEVICES=names).TRAINING_DEVICES
        == names
    )


def test_splitting_the_cpu_after_tensorflow_started_is_a_clear_error():
    tf.constant(1.0) + 1.0  # the runtime has started (whatever ran before in this process)
    present = len(tf.config.list_logical_devices("CPU"))
    ensure_cpu_devices(present)  # enough already: nothing to do
    with pytest.raises(
        RuntimeError, match=f"needs {present + 1} CPU devices but TensorFlow already started"
    ):
        ensure_cpu_devices(present + 1)
