"""Training as the pipeline runs it, one stage per module.

- `config`: the training config file (validated; presets; stages).
- `data`: the canonical dataset fetched locally and hashed; its splits as `mrcnn` datasets.
- `runs`: the run folder layout (record, checkpoints, history) and `collect_run`.
- `prepare`: a checked training request, the run record, the Prefect tasks.
- `process`: the child process that trains the stages and uploads each checkpoint.
- `report`: `metrics.json`, the loss curve, tables.
"""
