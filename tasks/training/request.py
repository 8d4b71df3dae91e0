"""`TrainingRequest`: what the training process needs, checked and gathered by `prepare`.

It travels from the flow to the child training process as JSON (`to_json` / `from_json`), so
every field is plain data.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tasks.failures import InvalidSetting

INIT_KINDS = ("scratch", "imagenet", "coco", "last", "model", "resume")


@dataclasses.dataclass(frozen=True)
class InitialWeights:
    """Where the first remaining stage starts.

    Attributes:
        kind: one of `INIT_KINDS` (``resume``: the run folder's newest checkpoint).
        uri: the weights' URI as given (None from scratch).
        path: the local copy the process loads (None from scratch).
        exclude: layer names not loaded (class-specific layers of another class count).
        epoch: the epoch the weights end (0 unless resuming).
        model: the pinned registry identity for ``model:`` (``NAME@N``).
    """

    kind: str = "scratch"
    uri: str | None = None
    path: str | None = None
    exclude: tuple[str, ...] | None = None
    epoch: int = 0
    model: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in INIT_KINDS:
            raise InvalidSetting(
                f"initial weights kind must be one of {INIT_KINDS}, got {self.kind!r}"
            )


@dataclasses.dataclass(frozen=True)
class TrainingRequest:
    """A checked training run.

    Attributes:
        config: ``mrcnn.Config.to_dict()``.
        classes: class names without the background, in category-id order.
        stages: ``Stage.to_dict()`` of every stage (cumulative epochs).
        dataset: ``{"uri", "hash"}`` of the canonical dataset.
        dataset_root: its local copy.
        run_dir: the run folder URI.
        work_dir: local scratch folder of this run (dataset copy, weights, child I/O).
        init: the initial weights.
        history: per-epoch rows already in the run folder (up to ``init.epoch``).
        budget_seconds: the time budget of the whole run (None: stages end by epochs); each
            history row's ``elapsed`` counts it down across resumes.
        auto_config: ``mrcnn.auto_config.Choice.to_dict()`` of each value chosen from the
            data (empty without ``auto_config``); ``config`` holds them already.
    """

    config: dict[str, Any]
    classes: list[str]
    stages: list[dict[str, Any]]
    dataset: dict[str, str]
    dataset_root: str
    run_dir: str
    work_dir: str
    init: InitialWeights
    history: list[dict[str, Any]]
    budget_seconds: float | None = None
    auto_config: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def total_epochs(self) -> int | None:
        """The epoch the last stage ends at (None under a time budget)."""
        return None if self.budget_seconds else int(self.stages[-1]["epochs"])

    @property
    def elapsed_seconds(self) -> float:
        """Budget spent before this request (by earlier attempts of a resumed run)."""
        return float(self.history[-1].get("elapsed", 0.0)) if self.history else 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainingRequest:
        fields = json.loads(text)
        init = fields.pop("init")
        exclude = init.get("exclude")
        init = InitialWeights(**{**init, "exclude": tuple(exclude) if exclude else None})
        return cls(**fields, init=init)
