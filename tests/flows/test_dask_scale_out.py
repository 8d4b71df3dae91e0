"""The batch-inference flow on a real ``dask.distributed`` cluster of two worker processes
writes the same tables as on the flow's own thread pool and loads the model once per worker;
plus how ``dask_address`` is read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flows.batch_inference import batch_inference
from tasks.inference.task_runners import dask_task_runner, local_cluster_settings
from tests.support.tiny_model import distinct_model_dir, png_bytes

DAY = "2024-05-01"
TABLES = ("area_ratios", "instances", "errors")
PER_RUN = {"run_id", "inferred_at", "failed_at"}  # differ between any two runs
COUNTS = (
    "listed",
    "skipped",
    "processed",
    "errors",
    "error_types",
    "shards",
    "overlays",
    "model_version",
)  # the class sums depend on the order shards finish in


def count_model_loads() -> None:
    """On a worker: count the models this process builds."""
    from tasks.models import runtimes

    build = runtimes._build

    def counted(*args):
        runtimes.builds = getattr(runtimes, "builds", 0) + 1
        return build(*args)

    runtimes._build = counted


def model_loads() -> int:
    from tasks.models import runtimes

    return getattr(runtimes, "builds", 0)


def table(out: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(out / name)
    frame = frame.drop(columns=sorted(PER_RUN & set(frame.columns)))
    frame["run_date"] = frame["run_date"].astype(str)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def overlays(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in (out / "overlays").rglob("*.jpg"))


@pytest.mark.usefixtures("prefect_harness")
def test_two_dask_worker_processes_write_the_single_machine_tables(tmp_path: Path):
    from distributed import Client, LocalCluster

    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    for index in range(8):
        name = f"sub/{index}.png" if index % 2 else f"{index}.png"
        (source / name).write_bytes(png_bytes(40 + 4 * index, 48, seed=index))
    (source / "empty.png").write_bytes(b"")
    tiny = distinct_model_dir()
    run = dict(
        input_uri=str(source),
        run_date=DAY,
        batch_size=2,
        shard_size=3,
        weights=str(tiny / "model.weights.h5"),
        config=str(tiny / "config.json"),
    )

    alone = batch_inference(output_uri=str(tmp_path / "alone"), **run)
    settings = local_cluster_settings(2)
    assert (
        settings["n_workers"],
        settings["threads_per_worker"],
        settings["processes"],
        settings["host"],
        settings["dashboard_address"],
    ) == (2, 1, True, "127.0.0.1", None)
    with LocalCluster(**settings) as cluster, Client(cluster, set_as_default=False) as client:
        client.run(count_model_loads)
        spread = batch_inference(
            output_uri=str(tmp_path / "dask"), dask_address=cluster.scheduler_address, **run
        )
        loads = client.run(model_loads)

    assert sorted(loads.values()) == [1, 1]  # 3 shards, 2 workers: one model per process
    assert (spread.processed, spread.errors, spread.shards) == (8, 1, 3)
    assert {k: getattr(spread, k) for k in COUNTS} == {k: getattr(alone, k) for k in COUNTS}
    sizes = {name: len(table(tmp_path / "alone", name)) for name in TABLES}
    assert sizes["area_ratios"] == 8 * 2 and sizes["errors"] == 1 and sizes["instances"] > 0
    for name in TABLES:
        pd.testing.assert_frame_equal(
            table(tmp_path / "dask", name), table(tmp_path / "alone", name)
        )
    assert overlays(tmp_path / "dask") == overlays(tmp_path / "alone") != []


def test_dask_address_forms_and_bad_addresses(tmp_path: Path):
    remote = dask_task_runner("tcp://10.0.0.5:8786")
    assert remote.address == "tcp://10.0.0.5:8786" and remote.cluster_class is None
    assert dask_task_runner("localhost:8786").address == "localhost:8786"  # not local:N
    local = dask_task_runner("local:3")
    assert (local.address, local.cluster_class) == (None, "distributed.LocalCluster")
    assert local.cluster_kwargs == local_cluster_settings(3)
    for bad in ("local", "local:0", "local:two", "local:-1"):
        with pytest.raises(ValueError, match="'local:N' with N >= 1"):
            dask_task_runner(bad)
    with pytest.raises(ValueError, match="empty string"):
        dask_task_runner(" ")
    with pytest.raises(ValueError, match="local:N"):  # checked before any work
        batch_inference.fn(
            input_uri=str(tmp_path / "in"),
            output_uri=str(tmp_path / "out"),
            weights="w.weights.h5",
            config="config.json",
            dask_address="local:0",
        )
