"""Prefect tasks of ``select-for-review``: read the tables and run the strategies, then take
the budget. Reading storage is retried when transient; the choice is pure."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.io_task import io_task
from tasks.review.inputs import read_inputs
from tasks.review.selection import Chosen, allocate, run_strategies
from tasks.review.strategies import Pick, Thresholds


@io_task(name="find-review-candidates")
def find_candidates(
    output: str,
    since: datetime.date,
    until: datetime.date | None,
    strategies: Sequence[str],
    thresholds: Thresholds,
    window_days: int,
    seed: int,
) -> dict[str, list[Pick]]:
    """Every strategy's picks over the results of ``[since, until]``."""
    inputs = read_inputs(output, since, until, window_days)
    return run_strategies(inputs, strategies, thresholds, window_days, seed)


@task(name="allocate-budget", cache_policy=NO_CACHE, persist_result=False)
def choose(picks: dict[str, list[Pick]], budget: int) -> list[Chosen]:
    """The budget, strategies taking turns."""
    return allocate(picks, budget)
