"""Batch inference, stage by stage.

- `shards`: list images, plan shards, run one shard (decode, detect, measure, stage rows).
- `image_decoding`: bytes → RGB array, or an error record's type (EXIF, modes, bombs).
- `area_ratios`: detections → per-class area rows and instance rows (the tables' arithmetic).
- `task_runners`: where shards run (the flow's threads, or a Dask cluster).
- `shard_process`: a shard in a child process, so that a runtime crash costs one shard.

The tables they stage into, and the commit that publishes them, are `tasks.tables`.
"""
