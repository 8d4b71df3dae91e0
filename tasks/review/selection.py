"""The budget: strategies take turns, each giving its next image not yet chosen.

Round-robin in the order the strategies are asked for, so every strategy gets about
``budget / strategies`` images when it has that many and leaves the rest to the others when
it has fewer. An image chosen once carries every reason any strategy had for it (``random``,
which ranks every image, counts only for the images it took).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from tasks.failures import InvalidSetting
from tasks.review import STRATEGIES
from tasks.review.inputs import ReviewInputs
from tasks.review.strategies import (
    Pick,
    Thresholds,
    area_outliers,
    class_margin,
    disagreement,
    low_confidence,
    random_sample,
)

# Strategies that rank every image: only the images they take are theirs, not every image.
RANK_ALL = ("random",)


@dataclasses.dataclass(frozen=True)
class Chosen:
    """An image for review and why (the strategy that took it first)."""

    image_uri: str
    reasons: tuple[Pick, ...]


def allocate(picks: Mapping[str, Sequence[Pick]], budget: int) -> list[Chosen]:
    """Up to ``budget`` images, strategies taking turns in ``picks``' order.

    Args:
        picks: strategy name -> its picks, most worth reviewing first.
        budget: how many images at most.
    """
    if budget < 1:
        raise InvalidSetting(f"budget must be at least 1, got {budget}")
    queues = {name: list(ordered) for name, ordered in picks.items()}
    order: list[Pick] = []
    taken: set[str] = set()
    while len(order) < budget and any(queues.values()):
        for queue in queues.values():
            while queue and queue[0].image_uri in taken:
                queue.pop(0)
            if queue and len(order) < budget:
                pick = queue.pop(0)
                order.append(pick)
                taken.add(pick.image_uri)
    reasons: dict[str, list[Pick]] = {uri: [] for uri in taken}
    for ordered in picks.values():
        for pick in ordered:
            if pick.image_uri in reasons:
                reasons[pick.image_uri].append(pick)
    return [
        Chosen(
            first.image_uri,
            (
                first,
                *[
                    p
                    for p in reasons[first.image_uri]
                    if p.strategy not in (first.strategy, *RANK_ALL)
                ],
            ),
        )
        for first in order
    ]


def run_strategies(
    inputs: ReviewInputs,
    strategies: Sequence[str],
    thresholds: Thresholds,
    window_days: int,
    seed: int,
) -> dict[str, list[Pick]]:
    """Each asked-for strategy's picks, in the order asked."""
    unknown = [name for name in strategies if name not in STRATEGIES]
    if unknown or not strategies:
        raise InvalidSetting(
            f"unknown strategy {unknown[0]!r}; expected some of {', '.join(STRATEGIES)}"
            if unknown
            else "no strategy given"
        )
    run = {
        "low-confidence": lambda: low_confidence(inputs.instances, thresholds.score_band),
        "class-margin": lambda: class_margin(
            inputs.instances, thresholds.class_margin, thresholds.overlap_iou
        ),
        "area-outlier": lambda: area_outliers(
            inputs.current, inputs.history, thresholds.outlier_z, window_days
        ),
        "disagreement": lambda: disagreement(inputs.results, thresholds.disagreement),
        "random": lambda: random_sample(inputs.image_uris, seed),
    }
    return {name: run[name]() for name in dict.fromkeys(strategies)}
