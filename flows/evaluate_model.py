"""Flow ``evaluate-model``: COCO AP and per-class area-ratio error, against the baselines of
predicting nothing and Otsu's threshold, on the validation split
(``docs/concepts/accuracy.md``).

The model is any source ``tasks.models.resolve`` reads: a registry reference (``NAME@ALIAS``,
``NAME@vN``), a training run folder, a checkpoint or an export folder; it is resolved once, so
the metrics of the version evaluated land in that version's folder even if an alias moves.
``metrics.json`` goes to ``output`` (default: the run folder's ``evaluation/``, or
``<registry>/.evaluations/<name>-vN-<time>`` for a reference); a table artifact shows the
per-class numbers.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from mrcnn.config import Backbone
from tasks.evaluation import default_output, evaluate_on_validation
from tasks.models import check_runtime, resolve


@flow(name="evaluate-model")
def evaluate_model(
    model: str,
    dataset: str,
    registry: str = "registry",
    output: str | None = None,
    runtime: str = "tensorflow",
    backbones: list[Backbone] | None = None,
) -> dict[str, Any]:
    """Evaluate a model on a canonical dataset's val split.

    Args:
        model: registry reference, run folder, checkpoint or export folder URI.
        dataset: canonical dataset URI.
        registry: registry URI, for references.
        output: folder URI for ``metrics.json``.
        runtime: a runtime of ``tasks.models.RUNTIMES`` that runs the model's format.
        backbones: callable backbones (functions, not names) allowed for a model whose
            config names one (``mrcnn.Config.from_dict``); a config naming other code is
            refused.

    Returns:
        The metrics (``bbox``, ``segm``, ``mAP50``, ``area_ratio_error``, ...) and
        ``metrics_uri``.
    """
    artifact = resolve(model, registry, backbones=backbones or ())
    check_runtime(artifact, runtime)
    output = output or default_output(artifact)
    metrics = evaluate_on_validation(artifact, dataset, output, runtime)
    get_run_logger().info(
        "segm AP %s, bbox AP %s, mean area-ratio error %.3f pp -> %s",
        metrics["segm"]["AP"],
        metrics["bbox"]["AP"],
        metrics["area_ratio_error"]["mean_mae_pp"],
        metrics["metrics_uri"],
    )
    return metrics
