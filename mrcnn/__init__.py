"""Mask R-CNN for TensorFlow 2 / Keras 3 with matterport/Mask_RCNN's API.

`from mrcnn import Config, Dataset, MaskRCNN`; the modules keep matterport's names
(`mrcnn.config`, `mrcnn.utils`, `mrcnn.model`, `mrcnn.visualize`). TensorFlow is imported only
when `MaskRCNN` (or a graph module) is first used.
"""

__all__ = ["Config", "Dataset", "MaskRCNN"]


def __getattr__(name: str):
    if name == "Config":
        from mrcnn.config import Config

        return Config
    if name == "Dataset":
        from mrcnn.dataset import Dataset

        return Dataset
    if name == "MaskRCNN":
        from mrcnn.model import MaskRCNN

        return MaskRCNN
    raise AttributeError(f"module 'mrcnn' has no attribute {name!r}")
