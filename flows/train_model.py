"""Flow ``train-model``: canonical dataset + training config -> checkpoints in a run folder.

prepare (fetch and check the dataset, resolve initial weights or the checkpoint to resume)
-> train the stages in a child process (progress artifact per epoch) -> metrics.json,
loss_curve.png and a losses table. Re-running with ``resume=True`` on the same run folder
continues after its newest checkpoint.
"""

from __future__ import annotations

import tempfile
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.training.config import load_training_config
from tasks.training.prepare import prepare_training_run, train_stages
from tasks.training.report import write_training_report
from tasks.training.runs import absolute, default_run_dir, list_checkpoints, newest_run


@flow(name="train-model")
def train_model(
    dataset: str,
    config: str | dict[str, Any],
    run_dir: str | None = None,
    resume: bool = False,
    registry: str = "registry",
    timeout_minutes: float | None = None,
) -> dict[str, Any]:
    """Train a model on a canonical dataset.

    Args:
        dataset: canonical dataset URI (``images/``, ``annotations/{train,val}.json``).
        config: training config file URI (YAML or JSON), ``preset:<name>``, or its content.
        run_dir: run folder URI; default ``<registry>/.runs/<name>-<UTC time>``, or with
            ``resume`` the newest such folder of this model name.
        resume: continue the run folder's newest checkpoint (the epoch count continues; a
            run folder without checkpoints starts from ``init_with``).
        registry: registry URI (``init_with: model:<reference>`` and the default run folder).
        timeout_minutes: stop the training process after this long.

    Returns:
        ``{run_dir, name, classes, epochs, checkpoint, metrics, loss_curve, dataset,
        final, resumed_from, auto_config}`` (``auto_config``: the values chosen from the
        data, `mrcnn.auto_config.Choice.to_dict()` rows).
    """
    logger = get_run_logger()
    training = load_training_config(config)
    if run_dir is None:
        run_dir = (newest_run(registry, training.name) if resume else None) or default_run_dir(
            registry, training.name
        )
    run_dir = absolute(run_dir)
    logger.info("run folder: %s", run_dir)
    with tempfile.TemporaryDirectory(prefix="train-model-") as work:
        request = prepare_training_run(
            dataset, training, run_dir, resume, registry, work, flow_run.id
        )
        result = train_stages(request, timeout_minutes)
    report = write_training_report(run_dir, result["history"])
    history = result["history"]
    resumed = request.init.epoch if request.init.kind == "resume" else None
    return {
        "run_dir": run_dir,
        "name": training.name,
        "classes": training.classes,
        "epochs": result["epoch"],
        "checkpoint": list_checkpoints(run_dir).get(result["epoch"]),
        **report,
        "dataset": request.dataset,
        "final": history[-1] if history else None,
        "resumed_from": resumed,
        "auto_config": request.auto_config,
    }
