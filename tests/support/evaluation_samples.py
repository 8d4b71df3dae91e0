"""Evaluation samples with a known answer: bright square "cells" on a dark, noisy background.

One class ("nucleus"): Otsu's threshold finds every cell exactly, while the simulated model
misses the last cell of each image, so every statistic of ``area_ratio_error`` is known.
"""

from __future__ import annotations

import numpy as np

from tasks.evaluation import Sample

SIZE, CELL = 48, 6  # image side; cell side: one cell is 36 px, 1.5625 % of the image
CELL_PCT = 100 * CELL * CELL / SIZE**2


def bright_cells(seed: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 ``[48, 48, 3]`` with ``cells`` (at most 25) bright squares, and their masks."""
    rng = np.random.default_rng(seed)
    image = rng.integers(10, 40, (SIZE, SIZE, 3)).astype(np.uint8)
    masks = np.zeros((SIZE, SIZE, cells), bool)
    for k in range(cells):
        top, left = 8 * (k // 5) + 1, 9 * (k % 5) + 1
        masks[top : top + CELL, left : left + CELL, k] = True
    foreground = masks.any(axis=-1)
    image[foreground] = rng.integers(180, 230, (int(foreground.sum()), 3))
    return image, masks


def missed_one_samples(images: int) -> list[Sample]:
    """Image k holds k + 2 cells; the "model" finds all but the last, each with score 1."""
    samples = []
    for seed in range(images):
        image, masks = bright_cells(seed, cells=seed + 2)
        found = masks[..., :-1]
        result = {
            "rois": _boxes(found),
            "class_ids": np.ones(found.shape[-1], np.int32),
            "scores": np.ones(found.shape[-1], np.float32),
            "masks": found,
        }
        samples.append(Sample(image, np.ones(masks.shape[-1], np.int32), masks, result))
    return samples


def _boxes(masks: np.ndarray) -> np.ndarray:
    boxes = []
    for k in range(masks.shape[-1]):
        ys, xs = np.nonzero(masks[..., k])
        boxes.append([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    return np.array(boxes, np.int32).reshape(-1, 4)
