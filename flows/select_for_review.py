"""Flow ``select-for-review``: production images worth correcting -> a labelme review folder.

read the tables -> run the strategies -> take the budget in turns -> copy the chosen images
and write a labelme JSON beside each (the model's detections as polygons) and
``review.json`` (why each was chosen). The folder goes to labelme as it is; the corrected
files come back through ``convert-masks`` and ``merge-datasets``.
"""

from __future__ import annotations

import datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from tasks import storage
from tasks.exports.folder import relative_names
from tasks.exports.writing import copy_images, load_predictions, write_documents, write_json
from tasks.failures import InvalidSetting
from tasks.review import MANIFEST_NAME, STRATEGIES
from tasks.review.manifest import review_manifest, settings_of
from tasks.review.steps import choose, find_candidates
from tasks.review.strategies import Thresholds


@flow(name="select-for-review")
def select_for_review(
    output: str,
    to: str,
    since: datetime.date | None = None,
    budget: int = 50,
    strategies: list[str] | None = None,
    seed: int = 0,
    until: datetime.date | None = None,
    window_days: int = 28,
    score_band: tuple[float, float] = (0.5, 0.8),
    class_margin: float = 0.1,
    outlier_z: float = 3.5,
    disagreement: float = 0.05,
) -> dict[str, Any]:
    """Choose up to ``budget`` images processed in ``[since, until]`` and write a review folder.

    Args:
        output: batch inference's output folder (local or s3://).
        to: the review folder to write; must not lie inside ``output``. ``{date}`` in it
            becomes today's date (UTC), so a schedule writes one folder per run.
        since, until: inclusive run_date range of the images to choose from (default since:
            seven days ago, the past week).
        budget: most images to choose.
        strategies: some of ``low-confidence``, ``class-margin``, ``area-outlier``,
            ``disagreement``, ``random`` (default all), taking turns in this order.
        seed: the random sample's seed: the same seed and tables choose the same images.
        window_days: the area-outlier strategy's trailing window before ``since``.
        score_band, class_margin, outlier_z, disagreement: the strategies' thresholds (see
            ``tasks.review.strategies``).

    Returns:
        ``{to, manifest, images, chosen_by, candidates}``.
    """
    today = datetime.datetime.now(datetime.timezone.utc).date()
    to = to.replace("{date}", today.isoformat())
    since = since or today - datetime.timedelta(days=7)
    if storage.is_inside(to, output):
        raise InvalidSetting(
            f"review folder {to!r} must not be inside the results folder {output!r}"
        )
    thresholds = Thresholds(
        tuple(score_band), class_margin, outlier_z=outlier_z, disagreement=disagreement
    )
    strategies = list(strategies or STRATEGIES)
    picks = find_candidates(output, since, until, strategies, thresholds, window_days, seed)
    chosen = choose(picks, budget)
    if not chosen:
        raise InvalidSetting(
            f"no image in {output!r} processed between {since} and {until or 'today'}"
        )
    predictions = {
        p.image_uri: p
        for p in load_predictions(output, since, until, [item.image_uri for item in chosen])
    }
    names = relative_names(sorted(predictions))
    copy_images("labelme", names, to)
    write_documents("labelme", list(predictions.values()), names, to)
    settings = {
        "results": output,
        "since": since.isoformat(),
        "until": until.isoformat() if until else None,
        "budget": budget,
        "seed": seed,
        "strategies": strategies,
        "window_days": window_days,
        **settings_of(thresholds),
    }
    manifest = review_manifest(chosen, predictions, names, settings)
    manifest_uri = write_json(storage.join(to, MANIFEST_NAME), manifest)
    create_table_artifact(
        [
            {
                "image": image["image"],
                "chosen by": image["reasons"][0]["strategy"],
                "why": image["reasons"][0]["detail"],
            }
            for image in manifest["images"]
        ],
        key="select-for-review",
        description=f"{len(chosen)} images for review",
    )
    get_run_logger().info(
        "chose %d images for review (%s) into %s", len(chosen), manifest["chosen_by"], to
    )
    return {
        "to": to,
        "manifest": manifest_uri,
        "images": len(chosen),
        "chosen_by": manifest["chosen_by"],
        "candidates": {name: len(found) for name, found in picks.items()},
    }
