"""Flow ``evaluate-model``: COCO AP and per-class area-ratio error on the validation split.

The model is a registry reference (``NAME@ALIAS``, ``NAME@vN``) or a training run folder.
``metrics.json`` goes to ``output`` (default: the run folder's ``evaluation/``, or
``<registry>/.evaluations/<name>-vN-<time>`` for a reference); a table artifact shows the
per-class numbers.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from tasks.evaluation import default_output, evaluate_on_validation


@flow(name="evaluate-model")
def evaluate_model(model: str, dataset: str, registry: str = "registry",
                   output: str | None = None) -> dict[str, Any]:
    """Evaluate a model on a canonical dataset's val split.

    Args:
        model: registry reference or run folder URI (see the module docstring).
        dataset: canonical dataset URI.
        registry: registry URI, for references.
        output: folder URI for ``metrics.json``.

    Returns:
        The metrics (``bbox``, ``segm``, ``mAP50``, ``area_ratio_error``, ...) and
        ``metrics_uri``.
    """
    output = output or default_output(model, registry)
    metrics = evaluate_on_validation(model, dataset, registry, output)
    get_run_logger().info("segm AP %s, bbox AP %s, mean area-ratio error %.3f pp -> %s",
                          metrics["segm"]["AP"], metrics["bbox"]["AP"],
                          metrics["area_ratio_error"]["mean_mae_pp"], metrics["metrics_uri"])
    return metrics
