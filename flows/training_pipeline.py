"""Flow ``training-pipeline``: annotations -> registered, evaluated model, in one flow run.

convert-masks -> train-model -> evaluate-model -> register-model, each a subflow (visible in
the Prefect UI under this run, whose id goes into the version's ``lineage.json``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.convert_masks import convert_masks
from flows.evaluate_model import evaluate_model
from flows.register_model import register_model
from flows.train_model import train_model
from tasks.convert import Format
from tasks.training.runs import default_run_dir
from tasks.training.config import load_training_config


@flow(name="training-pipeline")
def training_pipeline(source: str, dataset: str, config: str | dict[str, Any],
                      registry: str = "registry", format: Format = "labelme",
                      labels: str | list[str] | None = None, val_fraction: float = 0.2,
                      run_dir: str | None = None, resume: bool = False,
                      gate_metric: str = "segm.AP", higher_is_better: bool = True,
                      force: bool = False, reason: str | None = None,
                      timeout_minutes: float | None = None) -> dict[str, Any]:
    """Convert annotations, train, evaluate on the val split, register and gate to production.

    Args:
        source: annotations folder URI (see ``convert-masks``).
        dataset: where the canonical dataset is written.
        config: training config file URI, ``preset:<name>``, or its content.
        registry: registry URI.
        format: annotation format of ``source``.
        labels: labels file URI or class names (default: the classes of the training config).
        val_fraction: share of images in the val split.
        run_dir: training run folder (default ``<registry>/.runs/<name>-<UTC time>``).
        resume: continue ``run_dir``'s newest checkpoint (or the newest run's).
        gate_metric, higher_is_better, force, reason: the promotion gate (``register-model``).
        timeout_minutes: stop training after this long.

    Returns:
        ``{dataset, run_dir, metrics, version, reference, promoted, decision}``.
    """
    training = load_training_config(config)
    if force and not (reason and reason.strip()):
        raise ValueError("force needs a reason")
    converted = convert_masks(source=source, destination=dataset, format=format,
                              labels=training.classes if labels is None else labels,
                              val_fraction=val_fraction)
    if run_dir is None and not resume:
        run_dir = default_run_dir(registry, training.name)
    trained = train_model(dataset=dataset, config=training.to_dict(), run_dir=run_dir,
                          resume=resume, registry=registry, timeout_minutes=timeout_minutes)
    evaluated = evaluate_model(model=trained["run_dir"], dataset=dataset, registry=registry)
    registered = register_model(run_dir=trained["run_dir"], registry=registry,
                                metrics=evaluated["metrics_uri"], gate_metric=gate_metric,
                                higher_is_better=higher_is_better, force=force, reason=reason)
    return {"dataset": converted["destination"], "run_dir": trained["run_dir"],
            "metrics": evaluated["metrics_uri"], "version": registered["version"],
            "reference": registered["reference"],
            "promoted": registered["decision"]["promoted"], "decision": registered["decision"]}
