"""Deployments: settings, the served deployments, ``prefect.yaml``, and the real thing — a
``prefect server``, ``python -m deployments.serve`` and ``prefect deployment run --watch``
writing Parquet to a SeaweedFS bucket, read back with DuckDB."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deployments.serve import ServeSettings, build_deployments, load_settings
from tasks import storage
from tests.support.seaweed import free_ports
from tests.support.tiny_model import png_bytes, tiny_model_dir

REPO = Path(__file__).resolve().parents[2]
PREFECT = Path(sys.executable).parent / "prefect"
ZONE = "Pacific/Kiritimati"  # UTC+14: its date differs from UTC's for most of the day


def test_settings_come_from_the_file_then_the_environment(tmp_path: Path):
    config = tmp_path / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "timezone": "Europe/Berlin",
                "nightly": {
                    "input_uri": "s3://b/in/",
                    "output_uri": "s3://b/out/",
                    "batch_size": 2,
                },
            }
        )
    )
    settings = load_settings(
        str(config),
        {
            "MRCNN_TIMEZONE": "Asia/Tokyo",
            "MRCNN_INPUT_URI": "s3://b/other/",
            "MRCNN_REVIEW_URI": "s3://b/review/{date}/",
        },
    )
    assert settings == ServeSettings(
        "Asia/Tokyo",
        "0 2 * * *",
        {"input_uri": "s3://b/other/", "output_uri": "s3://b/out/", "batch_size": 2},
        review={"output": "s3://b/out/", "to": "s3://b/review/{date}/"},
    )
    from_variable = load_settings(None, {"MRCNN_DEPLOYMENTS_CONFIG": str(config)})
    assert from_variable.timezone == "Europe/Berlin"
    assert load_settings(None, {}) == ServeSettings()


def test_bad_settings_are_named(tmp_path: Path):
    config = tmp_path / "serve.yaml"
    config.write_text("timezone: UTC\nschedule: nightly\n")
    with pytest.raises(ValueError, match=r"unknown keys \['schedule'\]"):
        load_settings(str(config), {})
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        load_settings(None, {"MRCNN_TIMEZONE": "Mars/Olympus"})
    config.write_text("nightly: {inputs: s3://b/}\n")
    with pytest.raises(ValueError, match=r"\['inputs'\] are not parameters of batch-inference"):
        load_settings(str(config), {})
    with pytest.raises(FileNotFoundError, match="deployments config"):
        load_settings(str(tmp_path / "missing.yaml"), {})


def test_served_deployments_and_prefect_yaml_define_the_same_jobs():
    settings = ServeSettings("Europe/Berlin", "0 2 * * *", {"input_uri": "s3://b/in/"})
    served = {f"{d.flow_name}/{d.name}": d for d in build_deployments(settings)}
    assert {
        "batch-inference/nightly",
        "select-for-review/weekly",
        "convert-masks/on-demand",
    } <= set(served)
    weekly = served["select-for-review/weekly"]
    assert (weekly.schedules[0].schedule.cron, weekly.schedules[0].schedule.timezone) == (
        "0 6 * * 1",
        "Europe/Berlin",
    )
    nightly = served["batch-inference/nightly"]
    assert nightly.concurrency_limit == 1
    assert nightly.parameters == {"report": True, "input_uri": "s3://b/in/"}
    schedule = nightly.schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "Europe/Berlin")

    project = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    entries = {
        (d["entrypoint"].split(":")[1].replace("_", "-"), d["name"]): d
        for d in project["deployments"]
    }
    assert set(entries) == {
        ("batch-inference", "nightly"),
        ("training-pipeline", "on-demand"),
        ("convert-masks", "on-demand"),
        ("select-for-review", "weekly"),
    }
    yaml_nightly = entries[("batch-inference", "nightly")]
    assert yaml_nightly["schedules"][0]["cron"] == "0 2 * * *"
    assert yaml_nightly["concurrency_limit"] == 1
    assert {d["work_pool"]["name"] for d in project["deployments"]} == {"mrcnn-process"}
    for (flow, name), entry in entries.items():
        path = REPO / entry["entrypoint"].split(":")[0]
        if f"{flow}/{name}" in served:
            assert path.is_file() and served[f"{flow}/{name}"].entrypoint.endswith(
                entry["entrypoint"]
            )


def api(port: int, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api{path}",
        method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def wait_for(check, what: str, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what}: process exited {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group the test started (the server's uvicorn child included)."""
    for sig, timeout in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A real ``prefect server start`` on a free loopback port, with its own PREFECT_HOME."""
    port = free_ports(1)[0]
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_for(lambda: api(port, "/health") is True, "prefect server", 90, server, log)
        yield port, env
    finally:
        stop(server)


def test_nightly_deployment_run_writes_the_tables(
    prefect_server, s3_env, s3_prefix: str, tmp_path: Path
):
    port, env = prefect_server
    tiny = tiny_model_dir()
    for index in range(2):
        storage.write_bytes(f"{s3_prefix}/in/{index}.jpg", png_bytes(40, 56, seed=index))
    env = {
        **env,
        **s3_env.environment,
        "MRCNN_TIMEZONE": ZONE,
        "MRCNN_OUTPUT_URI": f"{s3_prefix}/out",
        "PYTHONPATH": str(REPO),
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        serve = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: api(port, "/deployments/name/batch-inference/nightly"),
            "served deployments",
            120,
            serve,
            log,
        )
        before = datetime.datetime.now(zoneinfo.ZoneInfo(ZONE)).date()
        run = subprocess.run(
            [
                str(PREFECT),
                "deployment",
                "run",
                "batch-inference/nightly",
                "--param",
                f"input_uri={s3_prefix}/in/",
                "--param",
                f"weights={tiny}/model.weights.h5",
                "--param",
                f"config={tiny}/config.json",
                "--watch",
                "--watch-timeout",
                "300",
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=330,
        )
        after = datetime.datetime.now(zoneinfo.ZoneInfo(ZONE)).date()
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{log.read_text()[-3000:]}"
        deployment = api(port, "/deployments/name/batch-inference/nightly")
    finally:
        stop(serve)  # before the server (see stack.md)
    assert api(port, "/deployments/name/batch-inference/nightly")["paused"] is False
    deploy_with_prefect_yaml(env, s3_prefix, tmp_path)
    deployed = api(port, "/deployments/name/batch-inference/nightly")
    assert deployed["work_pool_name"] == "mrcnn-process"
    assert deployed["parameters"]["input_uri"] == f"{s3_prefix}/in/"

    from mrcnn_pipeline.results import summarize

    columns, rows = summarize(f"{s3_prefix}/out")
    found = [dict(zip(columns, row)) for row in rows]
    assert [(r["class_name"], r["images"]) for r in found] == [("car", 2), ("pothole", 2)]
    assert found[0]["run_date"] in (before, after)  # the scheduled date in the schedule's zone
    schedule = deployment["schedules"][0]["schedule"]
    assert (schedule["cron"], schedule["timezone"]) == ("0 2 * * *", ZONE)
    limit = deployment["concurrency_limit"] or deployment["global_concurrency_limit"]["limit"]
    assert limit == 1


def deploy_with_prefect_yaml(env: dict[str, str], s3_prefix: str, tmp_path: Path) -> None:
    """``prefect deploy`` of ``deployments/prefect.yaml`` into a process work pool."""
    env = {
        **env,
        "MRCNN_INPUT_URI": f"{s3_prefix}/in/",
        "MRCNN_MODEL": "tiny@production",
        "MRCNN_REGISTRY": str(tmp_path / "registry"),
    }
    subprocess.run(
        [str(PREFECT), "work-pool", "create", "mrcnn-process", "--type", "process"],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=60,
    )
    names = (
        ["--all"]
        if (REPO / "flows" / "training_pipeline.py").exists()
        else ["--name", "batch-inference/nightly", "--name", "convert-masks/on-demand"]
    )
    deploy = subprocess.run(
        [
            str(PREFECT),
            "--no-prompt",
            "deploy",
            "--prefect-file",
            "deployments/prefect.yaml",
            *names,
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
