"""Batch inference under faults, through the real CLI in child processes: SIGKILL at each step
of a shard and of the commit, new / changed / removed images before the re-run, concurrent
runs with readers watching, an S3 server stopped and restarted mid-run, unwritable outputs.
Every scenario ends with the invariants of ``tasks.tables`` (``check_invariants``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest

from flows.batch_inference import InferenceSummary, batch_inference
from mrcnn_pipeline.cli import main
from tasks import storage
from tasks.inference.shards import find_images
from tests.support.seaweed import seaweed_server, start_weed, stop, wait_until_ready
from tests.support.tables_check import check_invariants, read_table
from tests.support.tiny_model import CLASS_NAMES, png_bytes, tiny_model_dir

DAY = "2024-05-01"
REPO = Path(__file__).resolve().parents[2]
CLASSES = len(CLASS_NAMES)


@pytest.fixture(scope="module")
def tiny() -> Path:
    return tiny_model_dir()


@pytest.fixture
def child_env(prefect_harness, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Children use the session's Prefect API; retries are quick; garbage is stale at once."""
    from prefect.settings import PREFECT_API_URL

    settings = {
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "MRCNN_RETRY_DELAYS": "1",
        "MRCNN_STALE_SECONDS": "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    monkeypatch.setenv("MRCNN_STALE_SECONDS", "0")
    return {**os.environ, **settings}


def write_images(root: str, names: list[str], seed: int = 0) -> None:
    for number, name in enumerate(names):
        storage.write_bytes(storage.join(root, name), png_bytes(40, 48, seed=seed + number))


def infer_command(tiny: Path, source: str, out: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mrcnn_pipeline.cli",
        "infer",
        "--weights",
        str(tiny / "model.weights.h5"),
        "--config",
        str(tiny / "config.json"),
        "--input",
        source,
        "--output",
        out,
        "--run-date",
        DAY,
        "--shard-size",
        "4",
        "--batch-size",
        "2",
        *extra,
    ]


def run_child(
    command: list[str], env: dict[str, str], crash_at: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    env = {**env, **({"MRCNN_CRASH_AT": crash_at} if crash_at else {})}
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def results_for(out: str) -> set[str]:
    """Images with a result or an error on DAY."""
    return {
        row["image_uri"]
        for table in ("area_ratios", "errors")
        for row in read_table(out, table)
        if row["run_date"] == DAY
    }


def rerun(tiny: Path, source: str, out: str) -> InferenceSummary:
    return batch_inference(
        input_uri=source,
        output_uri=out,
        run_date=DAY,
        batch_size=2,
        shard_size=4,
        weights=str(tiny / "model.weights.h5"),
        config=str(tiny / "config.json"),
    )


def change_input(source: str) -> str:
    """A new image that sorts first, a changed one, a removed one (the shards shift)."""
    write_images(source, ["000_new.png"], seed=50)
    storage.write_bytes(storage.join(source, "img03.png"), png_bytes(44, 44, seed=60))
    removed = storage.join(source, "img07.png")
    storage.remove(removed)
    return removed


def crash_then_rerun(tiny: Path, source: str, out: str, env: dict[str, str], step: str) -> None:
    names = [f"img{number:02d}.png" for number in range(10)]
    write_images(source, names)
    storage.write_bytes(storage.join(source, "broken.png"), b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    child = run_child(infer_command(tiny, source, out), env, crash_at=step)
    assert child.returncode == -9, child.stderr[-3000:]
    removed = change_input(source)
    summary = rerun(tiny, source, out)
    listed = {ref.uri for ref in find_images(source)}
    check_invariants(out, CLASSES)
    assert listed <= results_for(out) <= listed | {removed}  # a recorded shard may hold it
    assert rerun(tiny, source, out).processed == 0
    assert summary.errors <= 1


# After a shard recorded, before any commit: the S3 test below.
@pytest.mark.parametrize("step", ["shard-staged", "intent-written", "temporary-written:/overlays/"])
def test_local_run_killed_at_a_step_then_new_changed_removed_images(
    tmp_path: Path, tiny: Path, child_env: dict[str, str], step: str
):
    crash_then_rerun(tiny, str(tmp_path / "in"), str(tmp_path / "out"), child_env, step)


def test_s3_run_killed_after_a_shard_recorded_then_changes(
    s3_env, s3_prefix: str, tiny: Path, child_env: dict[str, str]
):
    crash_then_rerun(
        tiny,
        f"{s3_prefix}/in",
        f"{s3_prefix}/out",
        {**child_env, **s3_env.environment},
        "shard-recorded",
    )


def test_concurrent_runs_on_one_output_with_readers_watching(
    tmp_path: Path, tiny: Path, child_env: dict[str, str]
):
    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    write_images(source, [f"img{number:02d}.png" for number in range(16)])
    watching, seen, failures = threading.Event(), set(), []
    reader = threading.Thread(target=watch_readers, args=(out, watching, seen, failures))
    watching.set()
    reader.start()
    try:
        children = [
            subprocess.Popen(
                infer_command(tiny, source, out, "--no-overlays"),
                cwd=REPO,
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [child.communicate(timeout=300) for child in children]
    finally:
        watching.clear()
        reader.join()
    assert [child.returncode for child in children] == [0, 0, 0], outputs[0][1][-3000:]
    assert not failures, failures[:3]
    assert seen and not any("_manifest" in name or name.endswith(".tmp") for name in seen)
    check_invariants(out, CLASSES, {DAY: {ref.uri for ref in find_images(source)}})
    assert rerun(tiny, source, out).processed == 0


def watch_readers(out: str, watching: threading.Event, seen: set[str], failures: list) -> None:
    """The three documented readers (docs/concepts/tables.md), in a loop.

    Each read must succeed on whole files.
    """
    while watching.is_set():
        if not Path(out, "area_ratios").exists():
            time.sleep(0.05)
            continue
        try:
            rows = duckdb.sql(
                f"SELECT filename FROM read_parquet('{out}/area_ratios/*/*.parquet',"
                " hive_partitioning=true, filename=true)"
            ).fetchall()
            seen.update(name for (name,) in rows)
            pd.read_parquet(f"{out}/area_ratios")
            dataset = ds.dataset(f"{out}/area_ratios", format="parquet", partitioning="hive")
            seen.update(dataset.files)
            dataset.to_table()
        except Exception as error:  # every other failure is a finding
            if not vanished(error):
                failures.append(repr(error))


def vanished(error: Exception) -> bool:
    """A file removed (superseded) between a reader's listing and its read: not a partial one."""
    return isinstance(error, FileNotFoundError) or any(
        words in str(error) for words in ("No such file", "No files found")
    )


def test_s3_server_stopped_and_restarted_mid_run(
    tmp_path: Path, tiny: Path, child_env: dict[str, str]
):
    (tmp_path / "weed").mkdir()
    with seaweed_server(tmp_path / "weed") as server:
        out, source = f"s3://{server.bucket}/out", f"s3://{server.bucket}/in"
        env = {**child_env, **server.environment}
        os.environ.update(server.environment)  # for this process's own checks
        try:
            write_images(source, [f"img{number:02d}.png" for number in range(12)])
            child = subprocess.Popen(
                infer_command(tiny, source, out),
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            wait_for(lambda: storage.list_files(f"{out}/_manifest/staging"), 120)
            os.kill(server.pid, 9)
            time.sleep(3)
            process, log = start_weed(
                tmp_path / "weed", server.ports, server.key, server.secret, server.bucket
            )
            try:
                wait_until_ready(server, process, tmp_path / "weed" / "weed.log", 60)
                _, stderr = child.communicate(timeout=300)
                assert child.returncode == 0, stderr[-3000:]
                check_invariants(out, CLASSES, {DAY: {ref.uri for ref in find_images(source)}})
            finally:
                stop(process)
                log.close()
        finally:
            for name in server.environment:
                os.environ.pop(name, None)


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[str, float]:
    start = time.monotonic()
    assert main(argv) == 1
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("mrcnn-pipeline")]
    assert len(lines) == 1, err
    return lines[0], elapsed


def infer_argv(tiny: Path, source: Path, out: str) -> list[str]:
    return infer_command(tiny, str(source), out)[3:]


def test_a_file_where_the_output_folder_should_be_fails_at_once(
    tmp_path: Path, tiny: Path, child_env, capsys: pytest.CaptureFixture
):
    write_images(str(tmp_path / "in"), ["a.png"])
    (tmp_path / "out").write_text("not a folder")
    line, elapsed = one_line_error(infer_argv(tiny, tmp_path / "in", str(tmp_path / "out")), capsys)
    assert f"output folder '{tmp_path / 'out'}' is not writable" in line
    assert elapsed < 20  # no retries, no model


def test_weights_that_are_not_hdf5_are_named_as_given(
    tmp_path: Path, tiny: Path, child_env, capsys: pytest.CaptureFixture
):
    write_images(str(tmp_path / "in"), ["a.png"])
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(png_bytes(8, 8))
    argv = infer_argv(tiny, tmp_path / "in", str(tmp_path / "out"))
    argv[argv.index("--weights") + 1] = str(photo)
    line, _ = one_line_error(argv, capsys)
    assert f"'{photo}' is not an HDF5 file" in line and "mrcnn-weights-" not in line


def test_an_unreachable_object_store_is_one_line_naming_the_endpoint(
    tmp_path: Path, tiny: Path, child_env
):
    from tests.support.seaweed import free_ports

    endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"
    write_images(str(tmp_path / "in"), ["a.png"])
    # MRCNN_RETRY_DELAYS is read when the tasks are declared: the command's own process.
    env = {
        **child_env,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ENDPOINT_URL": endpoint,
        "MRCNN_RETRY_DELAYS": "",
    }
    done = run_child(infer_command(tiny, str(tmp_path / "in"), "s3://bucket/out"), env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("mrcnn-pipeline")]
    assert f"object store {endpoint} did not answer for 's3://bucket/out" in line


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_read_only_and_full_outputs_fail_fast_and_a_later_run_repairs(
    tmp_path: Path, tiny: Path, small_disk: Path, child_env, capsys: pytest.CaptureFixture
):
    source = tmp_path / "in"
    write_images(str(source), [f"img{number:02d}.png" for number in range(12)])
    out = str(small_disk / "out")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    line, elapsed = one_line_error(infer_argv(tiny, source, out), capsys)
    assert f"output folder '{out}' is not writable: Read-only file system" in line
    assert elapsed < 20
    subprocess.run(["mount", "-o", "remount,rw,size=24k", str(small_disk)], check=True)
    line, elapsed = one_line_error(infer_argv(tiny, source, out), capsys)
    assert "No space left on device" in line and out in line and ".tmp" not in line
    assert elapsed < 60  # a full disk is not retried
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    assert main(infer_argv(tiny, source, out)) == 0
    check_invariants(out, CLASSES, {DAY: {ref.uri for ref in find_images(str(source))}})


@pytest.mark.usefixtures("prefect_harness")
def test_a_runtime_crash_costs_one_shard_not_the_run(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
):
    """A shard whose process dies (SIGKILL inside detect, as a segfault would) is tried again
    in a fresh process, then failed; the other shards are committed; the next run redoes it."""
    from prefect.exceptions import FailedRun

    source, out = str(tmp_path / "in"), str(tmp_path / "out")
    write_images(source, [f"img{number:02d}.png" for number in range(10)])
    monkeypatch.setenv("MRCNN_CRASH_AT", "detect:img05")  # the spawned shard process reads it
    settings = dict(
        input_uri=source,
        output_uri=out,
        run_date=DAY,
        batch_size=2,
        shard_size=4,
        weights=str(tiny / "model.weights.h5"),
        config=str(tiny / "config.json"),
        isolate_shards=True,
        overlays=False,
    )
    with pytest.raises(
        (FailedRun, RuntimeError),
        match="1 of 3 shards failed.*died 2 times "
        r"\(killed by SIGKILL",
    ):
        batch_inference(**settings)
    done = results_for(out)
    assert len(done) == 6 and not any(
        name in uri for uri in done for name in ("img04", "img05", "img06", "img07")
    )
    check_invariants(out, CLASSES)
    monkeypatch.delenv("MRCNN_CRASH_AT")
    assert batch_inference(**settings).processed == 4
    assert len(results_for(out)) == 10
    check_invariants(out, CLASSES)
