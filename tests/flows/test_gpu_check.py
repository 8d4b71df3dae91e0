"""`make gpu-check`: skips with one line without a GPU; its checks run on any device.

No GPU runs this project's tests, so the checks are exercised with the CPU standing in for
the GPU: the same code places the model with `tf.device`.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_pipeline import gpu_check


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="a GPU is visible")
def test_without_a_gpu_it_says_so_in_one_line(capsys):
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "sees no GPU" in out and ".[gpu]" in out


def test_parity_notices_a_moved_box_a_changed_class_and_a_lost_mask():
    masks = np.zeros((32, 32, 2), bool)
    masks[2:10, 2:10, 0] = masks[15:30, 15:30, 1] = True
    result = {
        "rois": np.array([[2, 2, 10, 10], [15, 15, 30, 30]], np.int32),
        "class_ids": np.array([1, 2], np.int32),
        "scores": np.array([0.9, 0.8], np.float32),
        "masks": masks,
    }
    assert gpu_check.compare([result], [result]).passed
    moved = {**result, "rois": result["rois"] + np.array([[0, 0, 3, 0], [0, 0, 0, 0]])}
    assert (
        gpu_check.compare([result], [moved]).max_box_px == 3
        and not gpu_check.compare([result], [moved]).passed
    )
    other = {**result, "class_ids": np.array([1, 3], np.int32)}
    assert not gpu_check.compare([result], [other]).same_classes
    lost = {**result, "masks": np.concatenate([masks[..., :1], np.zeros((32, 32, 1), bool)], -1)}
    assert gpu_check.compare([result], [lost]).min_mask_iou == 0.0


@pytest.mark.slow
def test_the_checks_run_with_the_cpu_standing_in_for_the_gpu(tmp_path):
    training, weights = gpu_check.check_training(
        "/CPU:0", steps=4, precision="float32", folder=str(tmp_path), val_images=4
    )
    assert training.steps == 4 and np.isfinite([training.first_loss, training.last_loss]).all()
    assert 0.0 <= training.mask_ap50 <= 1.0 and training.precision == "float32"
    images = [gpu_check.shapes(4, 3).load_image(i) for i in range(4)]
    first = gpu_check.detect_on("/CPU:0", weights, images)
    parity = gpu_check.compare(first, gpu_check.detect_on("/CPU:0", weights, images))
    assert parity.passed and parity.images == 4
    assert gpu_check.images_per_second("/CPU:0", weights, size=128, batch=2, calls=1) > 0
