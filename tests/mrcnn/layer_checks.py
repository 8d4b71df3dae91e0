"""Shared checks for the graph-layer tests: a config round trip and a numpy ROI-crop reference."""

from __future__ import annotations

import json
from collections.abc import Sequence

import keras
import numpy as np


def check_layer_config_round_trip(layer: keras.layers.Layer) -> keras.layers.Layer:
    """Rebuild `layer` from its config, directly and through Keras (de)serialization.

    Asserts that the config is JSON-serialisable and that both rebuilt layers report the same
    config and class; returns the layer rebuilt through `deserialize_keras_object`.
    """
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(layer)
    assert restored.get_config() == config
    return restored


def _sample_axis(start: float, stop: float, size: int, length: int) -> np.ndarray:
    """Source coordinates of `tf.image.crop_and_resize` along one axis (normalized box side)."""
    if length == 1:
        return np.array([0.5 * (start + stop) * (size - 1)])
    return start * (size - 1) + np.arange(length) * (stop - start) * (size - 1) / (length - 1)


def _interpolate_axis(
    values: np.ndarray, coords: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of `values` at `coords` along `axis`, and a mask of samples inside."""
    size = values.shape[axis]
    inside = (coords >= 0) & (coords <= size - 1)
    clamped = np.clip(coords, 0, size - 1)
    low = np.floor(clamped).astype(int)
    high = np.ceil(clamped).astype(int)
    frac = (clamped - low).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    low_values = np.take(values, low, axis=axis)
    high_values = np.take(values, high, axis=axis)
    return low_values + (high_values - low_values) * frac, inside


def crop_and_resize_reference(
    images: np.ndarray, boxes: np.ndarray, box_indices: Sequence[int], crop_size: Sequence[int]
) -> np.ndarray:
    """Numpy twin of `tf.image.crop_and_resize` (bilinear, zeros outside the image).

    Args:
        images: `[B, H, W, C]`.
        boxes: `[n, (y1, x1, y2, x2)]` normalized so that 0 and 1 are the first and last pixel.
        box_indices: `[n]` image of each box.
        crop_size: `(h, w)` of the crops.

    Returns:
        float64 `[n, h, w, C]`.
    """
    images = np.asarray(images, dtype=np.float64)
    _, height, width, _ = images.shape
    crops = []
    for (y1, x1, y2, x2), index in zip(np.asarray(boxes, dtype=np.float64), box_indices):
        ys = _sample_axis(y1, y2, height, crop_size[0])
        xs = _sample_axis(x1, x2, width, crop_size[1])
        rows, rows_inside = _interpolate_axis(images[index], ys, axis=0)
        crop, cols_inside = _interpolate_axis(rows, xs, axis=1)
        inside = rows_inside[:, None] & cols_inside[None, :]
        crops.append(np.where(inside[..., None], crop, 0.0))
    return np.stack(crops) if crops else np.zeros((0, *crop_size, images.shape[-1]))
