"""matterport's `mrcnn.utils` names, re-exported from the modules that now hold them.

New code should import from `mrcnn.boxes`, `mrcnn.anchors`, `mrcnn.masks`, `mrcnn.transform`,
`mrcnn.targets`, `mrcnn.dataset` and `mrcnn.evaluation` directly. `Dataset` and the AP
functions are imported on first access, so this module stays importable without them.
"""

from __future__ import annotations

import importlib
from typing import Any

from mrcnn.anchors import (
    compute_backbone_shapes,
    generate_anchors,
    generate_pyramid_anchors,
    get_anchors,
)
from mrcnn.boxes import (
    apply_box_deltas,
    box_refinement,
    clip_boxes,
    compute_iou,
    compute_overlaps,
    denorm_boxes,
    extract_bboxes,
    non_max_suppression,
    norm_boxes,
    trim_zeros,
)
from mrcnn.masks import (
    compute_overlaps_masks,
    expand_mask,
    minimize_mask,
    paste_masks,
    unmold_mask,
)
from mrcnn.targets import build_rpn_targets
from mrcnn.transform import (
    compose_image_meta,
    mold_image,
    parse_image_meta,
    resize,
    resize_image,
    resize_mask,
    unmold_image,
)

_LAZY = {
    "Dataset": "mrcnn.dataset",
    "compute_matches": "mrcnn.evaluation",
    "compute_ap": "mrcnn.evaluation",
    "compute_ap_range": "mrcnn.evaluation",
    "compute_recall": "mrcnn.evaluation",
}

__all__ = [
    "apply_box_deltas",
    "box_refinement",
    "build_rpn_targets",
    "clip_boxes",
    "compose_image_meta",
    "compute_backbone_shapes",
    "compute_iou",
    "compute_overlaps",
    "compute_overlaps_masks",
    "denorm_boxes",
    "expand_mask",
    "extract_bboxes",
    "generate_anchors",
    "generate_pyramid_anchors",
    "get_anchors",
    "minimize_mask",
    "mold_image",
    "non_max_suppression",
    "norm_boxes",
    "parse_image_meta",
    "paste_masks",
    "resize",
    "resize_image",
    "resize_mask",
    "trim_zeros",
    "unmold_image",
    "unmold_mask",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
