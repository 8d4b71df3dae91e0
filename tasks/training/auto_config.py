"""`auto_config`: the training split's statistics, and the Config values chosen from them.

The statistics come from the canonical dataset's COCO document (image sizes, each instance's
`bbox`) and a sample of its images (the mean pixel, read as training reads them); the rules are
`mrcnn.auto_config`'s. The values a training config sets itself (its `config`, its preset) win.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from mrcnn.auto_config import Choice, DatasetStats, choose, table
from mrcnn.intensity import Normalization
from tasks.training.config import TrainingConfig, parse_init

MEAN_PIXEL_SAMPLE = 100  # images read for the mean colour (evenly spaced over the split)


def dataset_stats(
    root: str,
    split: str = "train",
    sample: int = MEAN_PIXEL_SAMPLE,
    mean_pixel: bool = True,
    normalization: Normalization | None = None,
) -> DatasetStats:
    """Image sizes, instance boxes and counts of one split of a local canonical dataset; the
    mean pixel of its images as ``normalization`` (the config's, default "scale") maps them."""
    from mrcnn.dataset import CocoDataset

    with open(os.path.join(root, "annotations", f"{split}.json"), encoding="utf-8") as handle:
        document = json.load(handle)
    images = document.get("images", [])
    counts = {image["id"]: 0 for image in images}
    boxes = []
    for annotation in document.get("annotations", []):
        if annotation.get("iscrowd"):
            continue
        counts[annotation["image_id"]] = counts.get(annotation["image_id"], 0) + 1
        _, _, width, height = annotation["bbox"]
        boxes.append((max(height, 1), max(width, 1)))
    sizes = np.array([(image["height"], image["width"]) for image in images], dtype=float)
    mean = None
    if mean_pixel and images:
        dataset = CocoDataset()
        dataset.normalization = normalization or Normalization()
        dataset.load_coco(root, split)
        dataset.prepare()
        chosen = np.unique(
            np.linspace(0, len(dataset.image_ids) - 1, min(sample, len(images))).astype(int)
        )
        means = [
            dataset.load_image(int(dataset.image_ids[i])).reshape(-1, 3).mean(axis=0)
            for i in chosen
        ]
        mean = tuple(float(v) for v in np.mean(means, axis=0))
    return DatasetStats(
        sizes.reshape(-1, 2),
        np.array(boxes, dtype=float).reshape(-1, 2),
        np.array([counts[image["id"]] for image in images]),
        mean,
    )


def auto_choices(training: TrainingConfig, root: str) -> list[Choice]:
    """The values `mrcnn.auto_config.choose` takes for this training config and dataset."""
    kind, _ = parse_init(training.init_with)
    pretrained = kind in ("imagenet", "coco", "model")
    stats = dataset_stats(
        root,
        mean_pixel=not pretrained and "MEAN_PIXEL" not in training.config,
        normalization=Normalization.from_config(training.mrcnn_config()),
    )
    return choose(
        stats, user_set=set(training.config), pretrained=pretrained, user_values=training.config
    )


def with_auto_config(training: TrainingConfig, choices: list[dict[str, Any]]) -> TrainingConfig:
    """The training config with the chosen values (`Choice.to_dict()`) added to its `config`
    (the user's values kept)."""
    chosen = {c["key"]: c["value"] for c in choices if c["chosen"]}
    data = {**training.to_dict(), "config": {**training.config, **chosen}}
    return TrainingConfig.from_dict(data)


def choices_table(choices: list[dict[str, Any]]) -> str:
    """`Choice.to_dict()` rows as the table `mrcnn.auto_config.table` prints."""
    return table([Choice(**row) for row in choices])
