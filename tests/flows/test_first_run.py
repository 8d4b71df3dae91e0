"""The CLI's own Prefect API, as on a fresh machine: the first command prepares Prefect's
database and says so in one line, while both cores are busy with other work; later commands
do not; a Prefect that cannot start or answer is one line and exit code 1.

These tests run the installed command in child processes without the test harness's API
(no ``PREFECT_API_URL``), each with its own ``PREFECT_HOME``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mrcnn_pipeline.prefect_api import FIRST_RUN_NOTE
from tests.support.builders import image_bytes, labelme_json, shape, write
from tests.support.seaweed import free_ports

REPO = Path(__file__).resolve().parents[2]
_PREFECT_VARIABLES = (
    "PREFECT_API_URL",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    "PREFECT_PROFILE",
)


def child_environment(home: Path, **settings: str) -> dict[str, str]:
    """This process's environment with Prefect's home at ``home`` and no API URL."""
    environment = {
        name: value for name, value in os.environ.items() if name not in _PREFECT_VARIABLES
    }
    return {**environment, "PREFECT_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3", **settings}


def run_module(arguments: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m <arguments>`` from the checkout, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def convert(source: Path, output: Path, environment: dict[str, str]) -> subprocess.CompletedProcess:
    return run_module(
        [
            "mrcnn_pipeline.cli",
            "convert",
            "--format",
            "labelme",
            "--input",
            str(source),
            "--output",
            str(output),
        ],
        environment,
    )


@contextmanager
def busy_cores() -> Iterator[None]:
    """Every core runs a busy loop, as when other jobs share the machine."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def labelme_folder(root: Path) -> Path:
    """One image with one annotated triangle."""
    write(root / "a.png", image_bytes(30, 40, seed=1))
    triangle = shape("cat", [[2, 2], [10, 2], [10, 10]])
    write(root / "a.json", labelme_json("a.png", 30, 40, [triangle]))
    return root


@pytest.fixture(scope="module")
def first_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``convert`` from an empty Prefect home on busy cores: (home, source, the run).

    The slowest test of the file (40 s on an idle 2-core machine, minutes on a loaded one):
    Prefect's database migration, on purpose on busy cores, is what it checks."""
    root = tmp_path_factory.mktemp("first-run")
    home, source = root / "prefect-home", labelme_folder(root / "labelme")
    home.mkdir()
    with busy_cores():
        done = convert(source, root / "dataset", child_environment(home))
    return home, source, done


def test_the_first_run_prepares_prefect_while_the_cores_are_busy(first_run):
    home, source, done = first_run
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(FIRST_RUN_NOTE) == 1
    assert (home / "prefect.db").stat().st_size > 0
    assert (source.parent / "dataset" / "annotations" / "train.json").is_file()
    assert "converted 1 of 1 items" in done.stdout


def test_a_later_run_does_not_prepare_again(first_run, tmp_path: Path):
    home, source, _ = first_run
    done = convert(source, tmp_path / "dataset", child_environment(home))
    assert done.returncode == 0, done.stderr
    assert FIRST_RUN_NOTE not in done.stderr
    assert (tmp_path / "dataset" / "annotations" / "train.json").is_file()


def test_a_server_slower_than_its_startup_wait_is_one_line(first_run, tmp_path: Path):
    home, source, _ = first_run
    environment = child_environment(home, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    done = convert(source, tmp_path / "dataset", environment)
    assert done.returncode == 1
    assert done.stderr.startswith(
        "mrcnn-pipeline convert: error: Prefect's temporary server did not start within 1 s"
    )
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "dataset").exists()


@pytest.mark.parametrize("program", ["mrcnn-pipeline convert", "python -m mrcnn_pipeline.demo"])
def test_an_unusable_prefect_home_is_one_line(tmp_path: Path, program: str):
    (tmp_path / "a-file").write_text("not a folder")
    home, output = tmp_path / "a-file" / "prefect", tmp_path / "out"
    environment = child_environment(home)
    if program.endswith("demo"):
        done = run_module(["mrcnn_pipeline.demo", "--output", str(output)], environment)
    else:
        done = convert(labelme_folder(tmp_path / "labelme"), output, environment)
    assert done.returncode == 1
    assert done.stderr == (
        f"{program}: error: Prefect's folder '{home}' is not writable: Not a "
        "directory; set PREFECT_HOME to a writable folder, or start a server "
        "(prefect server start) and set PREFECT_API_URL to its /api\n"
    )
    assert not output.exists()


def test_an_api_url_nobody_answers_is_one_line(tmp_path: Path):
    url = f"http://127.0.0.1:{free_ports(1)[0]}/api"
    source = labelme_folder(tmp_path / "labelme")
    environment = child_environment(tmp_path / "home", PREFECT_API_URL=url)
    done = convert(source, tmp_path / "out", environment)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"mrcnn-pipeline convert: error: the Prefect API at {url} (PREFECT_API_URL) did not answer:"
    )
    assert "unset PREFECT_API_URL" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
