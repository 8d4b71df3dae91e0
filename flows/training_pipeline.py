"""Flow ``training-pipeline``: annotations -> registered, evaluated model, in one flow run.

convert-masks -> train-model -> evaluate-model -> register-model, each a subflow (visible in
the Prefect UI under this run, whose id goes into the version's ``lineage.json``). Without a
``source`` the dataset is taken as it is (e.g. one ``merge-datasets`` wrote). When the alias
already has a version, that version is evaluated on the same val split first, and the gate
compares the two on those images.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.convert_masks import convert_masks
from flows.evaluate_model import evaluate_model
from flows.register_model import register_model
from flows.train_model import train_model
from tasks import registry as model_registry
from tasks.convert import Format
from tasks.failures import InvalidSetting
from tasks.training.config import load_training_config
from tasks.training.runs import default_run_dir


@flow(name="training-pipeline")
def training_pipeline(
    source: str | None,
    dataset: str,
    config: str | dict[str, Any],
    registry: str = "registry",
    format: Format = "labelme",
    labels: str | list[str] | None = None,
    val_fraction: float = 0.2,
    run_dir: str | None = None,
    resume: bool = False,
    gate_metric: str = "segm.AP",
    higher_is_better: bool = True,
    force: bool = False,
    reason: str | None = None,
    timeout_minutes: float | None = None,
    init_with: str | None = None,
    alias: str = "production",
    format_options: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Convert annotations, train, evaluate on the val split, register and gate to production.

    Args:
        source: annotations folder URI (see ``convert-masks``), or None to train on
            ``dataset`` as it is.
        dataset: where the canonical dataset is written (or read, without ``source``).
        config: training config file URI, ``preset:<name>``, or its content.
        registry: registry URI.
        format: annotation format of ``source``.
        labels: labels file URI or class names (default: the classes of the training config).
        val_fraction: share of images in the val split.
        run_dir: training run folder (default ``<registry>/.runs/<name>-<UTC time>``).
        resume: continue ``run_dir``'s newest checkpoint (or the newest run's).
        gate_metric, higher_is_better, force, reason: the promotion gate (``register-model``).
        timeout_minutes: stop training after this long.
        init_with: overrides the config's ``init_with``, e.g. ``model:roads@production`` to
            fine-tune the production model.
        alias: the alias the gate moves.
        format_options: options of the annotation format, e.g. ``{"class_name": "nucleus"}``
            (``convert-masks``'s ``options``).

    Returns:
        ``{dataset, run_dir, metrics, baseline_metrics, version, reference, promoted,
        decision}``.
    """
    training = load_training_config(config)
    if init_with:  # validated like a config file's value
        training = load_training_config({**training.to_dict(), "init_with": init_with})
    if force and not (reason and reason.strip()):
        raise InvalidSetting("force needs a reason")
    if source is not None:
        convert_masks(
            source=source,
            destination=dataset,
            format=format,
            labels=training.classes if labels is None else labels,
            val_fraction=val_fraction,
            options=format_options,
        )
    if run_dir is None and not resume:
        run_dir = default_run_dir(registry, training.name)
    trained = train_model(
        dataset=dataset,
        config=training.to_dict(),
        run_dir=run_dir,
        resume=resume,
        registry=registry,
        timeout_minutes=timeout_minutes,
    )
    evaluated = evaluate_model(model=trained["run_dir"], dataset=dataset, registry=registry)
    holder = model_registry.read_alias(registry, training.name, alias)
    baseline = None
    if holder is not None:  # the same val split for both sides of the gate
        baseline = evaluate_model(
            model=f"{training.name}@v{holder['version']}", dataset=dataset, registry=registry
        )["metrics_uri"]
    registered = register_model(
        run_dir=trained["run_dir"],
        registry=registry,
        metrics=evaluated["metrics_uri"],
        alias=alias,
        gate_metric=gate_metric,
        higher_is_better=higher_is_better,
        force=force,
        reason=reason,
        baseline_metrics=baseline,
    )
    return {
        "dataset": dataset,
        "run_dir": trained["run_dir"],
        "metrics": evaluated["metrics_uri"],
        "baseline_metrics": baseline,
        "version": registered["version"],
        "reference": registered["reference"],
        "promoted": registered["decision"]["promoted"],
        "decision": registered["decision"],
    }
