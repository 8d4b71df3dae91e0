"""Flow ``register-model``: publish a finished training run as a new registry version, then
apply the promotion gate to an alias (``production`` by default).

The version gets the run's newest checkpoint, config, classes, the evaluation metrics,
``lineage.json`` (dataset URI and hash, training config and stages, initial weights, flow run
ids, code version, timings) and ``MODEL_CARD.md``. The gate's decision and both metrics go
into a markdown artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks import registry as model_registry
from tasks import storage
from tasks.failures import InvalidSetting
from tasks.registry import documents as registry_documents
from tasks.training.runs import collect_run


@task(name="register-version", cache_policy=NO_CACHE, persist_result=False)
def register_version(
    run_dir: str,
    registry: str,
    metrics: str,
    name: str | None,
    flow_runs: dict[str, str | None],
    gate_metric: str | None,
) -> dict[str, Any]:
    """Publish the run; returns ``{name, version, reference, uri}``.

    The gate's metric is looked up first, so that a misspelt metric registers nothing.
    """
    run = collect_run(run_dir)
    evaluation = storage.read_json(metrics, "evaluation metrics")
    if gate_metric:
        model_registry.metric_value(evaluation, gate_metric, metrics)
    lineage = {
        **run["lineage"],
        "flow_run_id": flow_runs["root"],
        "flow_runs": {**flow_runs, "training": run["lineage"]["training_flow_run_id"]},
        "code_version": registry_documents.code_version(),
        "evaluation": {
            "metrics": metrics,
            "dataset": evaluation.get("dataset"),
            "seconds": evaluation.get("seconds"),
        },
    }
    version = model_registry.register_version(
        registry,
        name or run["name"],
        run["weights"],
        run["config"],
        run["classes"],
        evaluation,
        lineage,
    )
    return {
        "name": version.name,
        "version": version.version,
        "reference": version.reference,
        "uri": version.uri,
    }


@task(name="promotion-gate", cache_policy=NO_CACHE, persist_result=False)
def promotion_gate(
    registry: str,
    name: str,
    version: int,
    alias: str,
    metric: str,
    higher_is_better: bool,
    force: bool,
    reason: str | None,
    baseline_metrics: str | None = None,
) -> dict[str, Any]:
    """Apply the gate; the decision becomes a markdown artifact."""
    baseline = storage.read_json(baseline_metrics, "baseline metrics") if baseline_metrics else None
    decision = model_registry.promote(
        model_registry.ModelVersion(registry, name, version),
        alias,
        metric,
        higher_is_better,
        force,
        reason,
        baseline,
    )
    create_markdown_artifact(
        registry_documents.decision_markdown(decision),
        key="register-model-promotion",
        description=f"{name} v{version} -> {alias}",
    )
    return decision


@flow(name="register-model")
def register_model(
    run_dir: str,
    registry: str = "registry",
    metrics: str | None = None,
    name: str | None = None,
    alias: str = "production",
    promote: bool = True,
    gate_metric: str = "segm.AP",
    higher_is_better: bool = True,
    force: bool = False,
    reason: str | None = None,
    baseline_metrics: str | None = None,
) -> dict[str, Any]:
    """Register a finished run and, unless ``promote=False``, gate it into ``alias``.

    Args:
        run_dir: the training run folder URI.
        registry: registry URI.
        metrics: the evaluation's ``metrics.json`` (default ``<run_dir>/evaluation/metrics.json``).
        name: model name (default: the run's).
        alias: alias the gate moves.
        promote: apply the promotion gate.
        gate_metric: dotted metric name in ``metrics.json`` compared by the gate.
        higher_is_better: False for error metrics such as ``area_ratio_error.mean_mae_pp``.
        force: move the alias even if the gate fails (needs ``reason``).
        reason: why the gate was overridden.
        baseline_metrics: ``metrics.json`` of the alias's current version evaluated on this
            run's val split; the gate then compares both on the same images (see
            ``tasks.registry.promote``).

    Returns:
        ``{name, version, reference, uri, decision}`` (``decision`` None without promotion).
    """
    if force and not (reason and reason.strip()):
        raise InvalidSetting("force needs a reason")
    model_registry.check_alias(alias)
    metrics = metrics or storage.join(run_dir, "evaluation", "metrics.json")
    flow_runs = {"register": flow_run.id, "root": flow_run.root_flow_run_id}
    registered = register_version(
        run_dir, registry, metrics, name, flow_runs, gate_metric if promote else None
    )
    decision = None
    if promote:
        decision = promotion_gate(
            registry,
            registered["name"],
            registered["version"],
            alias,
            gate_metric,
            higher_is_better,
            force,
            reason,
            baseline_metrics,
        )
        get_run_logger().info(
            "%s: %s",
            registered["reference"],
            ("promoted to " if decision["promoted"] else "not promoted to ")
            + f"{alias} ({decision['reason']})",
        )
    return {**registered, "decision": decision}
