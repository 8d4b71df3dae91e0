"""Choosing images for review: each strategy finds what was planted; the budget is shared."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

from tasks.review import STRATEGIES
from tasks.review.inputs import read_inputs
from tasks.review.selection import allocate, run_strategies
from tasks.review.strategies import Pick, Thresholds
from tests.support.results_tables import Detected, Result, write_day

CLASSES = ("circle", "square")
SIZE = 20
SINCE = datetime.date(2026, 6, 1)


def square(top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def usual(uri: str, seed: int, score: float = 0.97) -> Result:
    """A circle of about 9 % and a square of about 4 % of the image, confidently found."""
    side = 6 + seed % 2
    return Result(
        uri,
        SIZE,
        SIZE,
        (Detected(1, score, square(0, 0, side)), Detected(2, score, square(12, 12, 4))),
    )


def planted(out: Path) -> dict[str, str]:
    for day in range(1, 15):  # the trailing window: two weeks of ordinary images
        write_day(
            out,
            f"2026-05-{day:02d}",
            [usual(f"s3://b/in/old{day}-{k}.png", k) for k in range(3)],
            CLASSES,
        )
    odd = {
        "low-confidence": Result(
            "s3://b/in/unsure.png", SIZE, SIZE, (Detected(1, 0.55, square(0, 0, 6)),)
        ),
        "class-margin": Result(
            "s3://b/in/torn.png",
            SIZE,
            SIZE,
            (Detected(1, 0.9, square(2, 2, 8)), Detected(2, 0.86, square(2, 2, 8))),
        ),
        "area-outlier": Result(
            "s3://b/in/huge.png", SIZE, SIZE, (Detected(1, 0.98, square(0, 0, 16)),)
        ),
    }
    today = [usual(f"s3://b/in/new{k}.png", k) for k in range(12)] + list(odd.values())
    today.append(usual("s3://b/in/changed.png", 0))
    write_day(out, "2026-06-01", today, CLASSES, model=("shapes", "1"))
    write_day(
        out,
        "2026-06-02",
        [Result("s3://b/in/changed.png", SIZE, SIZE, (Detected(1, 0.97, square(0, 0, 14)),))],
        CLASSES,
        model=("shapes", "2"),
    )
    return {name: result.uri for name, result in odd.items()} | {
        "disagreement": "s3://b/in/changed.png"
    }


def picks_of(out: Path, seed: int = 0, strategies=STRATEGIES) -> dict[str, list[Pick]]:
    inputs = read_inputs(str(out), SINCE, None, window_days=28)
    return run_strategies(inputs, strategies, Thresholds(), 28, seed)


def test_each_strategy_ranks_its_planted_image_first(tmp_path: Path):
    expected = planted(tmp_path)
    picks = picks_of(tmp_path)
    for strategy, uri in expected.items():
        assert picks[strategy][0].image_uri == uri, (strategy, picks[strategy][:3])
    assert [p.image_uri for p in picks["low-confidence"]] == [expected["low-confidence"]]
    assert [p.image_uri for p in picks["class-margin"]] == [expected["class-margin"]]
    assert [p.image_uri for p in picks["disagreement"]] == [expected["disagreement"]]
    assert "circle covers 64.0 %" in picks["area-outlier"][0].detail
    assert "trailing 28 days" in picks["area-outlier"][0].detail
    assert "versions 1 and 2" in picks["disagreement"][0].detail
    assert len(picks["random"]) == 16  # every image of the selected days, once


def test_the_budget_takes_every_planted_image_and_the_seed_fixes_the_sample(tmp_path: Path):
    expected = planted(tmp_path)
    chosen = allocate(picks_of(tmp_path, seed=3), budget=5)
    assert [c.reasons[0].strategy for c in chosen] == list(STRATEGIES)
    assert {c.image_uri for c in chosen[:4]} == set(expected.values())
    again = allocate(picks_of(tmp_path, seed=3), budget=5)
    assert [c.image_uri for c in again] == [c.image_uri for c in chosen]
    samples = {
        allocate(picks_of(tmp_path, seed=seed, strategies=["random"]), 3)[0].image_uri
        for seed in range(6)
    }
    assert len(samples) > 1
    assert all(p.strategy != "random" for c in chosen[:4] for p in c.reasons)  # not a reason
    torn = next(c for c in chosen if c.image_uri == expected["class-margin"])
    assert {p.strategy for p in torn.reasons} >= {"class-margin"}


def test_a_strategy_with_fewer_picks_leaves_its_share_to_the_others():
    picks = {"a": [Pick("x", "a", 0, "")], "b": [Pick(u, "b", i, "") for i, u in enumerate("xyz")]}
    chosen = allocate(picks, budget=3)
    assert [(c.image_uri, c.reasons[0].strategy) for c in chosen] == [
        ("x", "a"),
        ("y", "b"),
        ("z", "b"),
    ]
    assert [p.strategy for p in chosen[0].reasons] == ["a", "b"]
    with pytest.raises(ValueError, match="budget"):
        allocate(picks, 0)


def test_unknown_strategies_are_named(tmp_path: Path):
    planted(tmp_path)
    with pytest.raises(ValueError, match="unknown strategy 'newest'"):
        picks_of(tmp_path, strategies=["newest"])
