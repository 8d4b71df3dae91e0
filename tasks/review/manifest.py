"""``review.json``: what was chosen, why, and by which model, beside the labelme files.

The document depends only on the tables and the settings (no clock), so the same selection
writes the same bytes. ``convert-masks`` does not read it as an annotation.
"""

from __future__ import annotations

import collections
import dataclasses
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.exports.predictions import ImagePrediction
from tasks.review.selection import Chosen


def review_manifest(
    chosen: Sequence[Chosen],
    predictions: Mapping[str, ImagePrediction],
    names: Mapping[str, str],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The manifest document.

    Args:
        chosen: the selection, in the order it was made.
        predictions: image URI -> its newest prediction.
        names: image URI -> its name in the review folder.
        settings: the selection's parameters (results folder, dates, budget, seed, ...).
    """
    images = []
    for item in chosen:
        prediction = predictions[item.image_uri]
        name = names[item.image_uri]
        images.append(
            {
                "image": name,
                "labelme": posixpath.splitext(name)[0] + ".json",
                "image_uri": item.image_uri,
                "run_date": prediction.run_date,
                "model": f"{prediction.model_name}@{prediction.model_version}",
                "reasons": [
                    {"strategy": pick.strategy, "detail": pick.detail} for pick in item.reasons
                ],
                "scores": [round(instance.score, 4) for instance in prediction.instances],
                "area_ratios": {k: round(v, 6) for k, v in prediction.area_ratios.items()},
            }
        )
    chosen_by = collections.Counter(item.reasons[0].strategy for item in chosen)
    return {"schema": 1, **settings, "chosen_by": dict(chosen_by), "images": images}


def settings_of(thresholds: Any) -> dict[str, Any]:
    """A thresholds dataclass as JSON-able settings."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(thresholds).items()
    }
