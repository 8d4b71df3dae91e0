"""``mrcnn-pipeline doctor`` against real things: a closed port as the Prefect API, a read-only
folder and an object store without credentials as the output, and a real S3 server
(SeaweedFS) for the good case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.logging.configuration import ensure_logging_setup

from mrcnn.hardware import detect
from mrcnn.precision import inference_precision
from mrcnn_pipeline.cli import main
from tasks import storage
from tests.support.seaweed import SeaweedServer, free_ports

REPO = Path(__file__).resolve().parents[2]

# Prefect's console log handler keeps the stderr it finds when its logging is set up: set it
# up at collection, not under a test's capsys, whose stream is closed when the test ends.
ensure_logging_setup()


def doctor(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, dict]:
    """Run ``doctor --json`` in this process; (exit code, the findings by check)."""
    code = main(["doctor", "--json", *argv])
    report = json.loads(capsys.readouterr().out)
    findings = {finding["check"]: finding for finding in report["findings"]}
    assert report["problems"] == sum(f["status"] == "problem" for f in findings.values())
    return code, findings


def test_a_closed_port_as_the_prefect_api_is_a_problem_with_its_fix(tmp_path: Path):
    url = f"http://127.0.0.1:{free_ports(1)[0]}/api"
    environment = {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "mrcnn_pipeline.cli", "doctor"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    problem = next(index for index, line in enumerate(lines) if line.startswith("problem"))
    assert "Prefect API" in lines[problem] and f"the Prefect API at {url}" in lines[problem]
    assert lines[problem + 1].split() == [
        "fix:",
        *(
            "start that server (prefect server "
            "start), or unset PREFECT_API_URL to use a "
            "temporary local server"
        ).split(),
    ]
    assert lines[-1] == "1 problem: a run would fail"


@pytest.mark.usefixtures("prefect_harness")
def test_this_machine_is_described_and_a_local_probe_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    code, findings = doctor(["--output", str(tmp_path / "new" / "out")], capsys)
    assert code == 0 and all(f["status"] != "problem" for f in findings.values()), findings
    hardware = detect(include_gpus=False)
    assert findings["CPU"]["details"]["model"] == hardware.cpu_model
    assert findings["CPU"]["details"]["native_bf16"] == hardware.native_bf16
    assert findings["cores"]["details"]["cores"] == hardware.cores
    assert (
        findings["precision"]["details"]["inference"]["precision"]
        == inference_precision("auto", hardware).precision
    )
    assert findings["Prefect API"]["details"]["temporary"] is False
    assert {"TensorFlow", "Keras", "Prefect"} <= {
        k for k, v in findings["versions"]["details"].items() if v
    }
    assert findings["output"]["details"]["writable"] is True
    assert findings["output disk"]["details"]["free_bytes"] > 0
    assert list(tmp_path.iterdir()) == []  # the probe removed the folders it made


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs (root ignores file modes; skipped where mounting is not allowed)."""
    mount = tmp_path / "read-only"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.usefixtures("prefect_harness")
def test_a_read_only_output_is_a_problem(read_only_folder: Path, capsys: pytest.CaptureFixture):
    code, findings = doctor(["--output", str(read_only_folder / "out")], capsys)
    assert code == 1
    output = findings["output"]
    assert output["status"] == "problem" and output["fix"]
    assert output["summary"] == (
        f"output folder '{read_only_folder / 'out'}' is not writable: Read-only file system"
    )


@pytest.mark.usefixtures("prefect_harness")
def test_an_object_store_without_credentials_is_a_problem(
    s3_env: SeaweedServer,
    s3_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):  # nor any file of them
        monkeypatch.setenv(name, str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # nor a cloud machine's role
    code, findings = doctor(["--output", s3_prefix], capsys)
    assert code == 1
    store = findings["output store"]
    assert store["status"] == "problem" and store["details"]["credentials"] is None
    assert store["summary"].startswith(f"{s3_env.endpoint}; no credentials found")
    assert "AWS_ACCESS_KEY_ID" in store["fix"]


@pytest.mark.usefixtures("prefect_harness")
def test_a_real_object_store_is_reachable_and_writable_and_its_secret_never_shown(
    s3_env: SeaweedServer, s3_prefix: str, capsys: pytest.CaptureFixture
):
    assert main(["doctor", "--output", s3_prefix]) == 0
    text = capsys.readouterr().out
    assert s3_env.secret not in text and s3_env.key not in text
    code, findings = doctor(["--output", s3_prefix], capsys)
    assert code == 0
    assert findings["output store"]["summary"] == (
        f"{s3_env.endpoint}; credentials from environment"
    )
    assert findings["output"]["details"]["writable"] is True
    assert storage.list_files(s3_prefix) == []  # the probe object is gone
