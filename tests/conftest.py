"""Fixtures shared by the whole suite.

The environment is set at import time, before any test module imports Prefect or
TensorFlow: Prefect without telemetry, in a throw-away ``PREFECT_HOME``, logging warnings
only; TensorFlow quiet. Servers are started once per session and only for tests that ask:
``prefect_harness`` (a temporary Prefect API) and ``seaweed`` (a real S3 server).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.seaweed import SeaweedServer, seaweed_server, weed_binary

_PREFECT_HOME = tempfile.mkdtemp(prefix="pytest-prefect-home-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # pycocotools 2.0.11's mask.decode trips numpy 2's __array__(copy=...) deprecation.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared reference data not found at {SHARED_DATA.resolve()} "
            "(only present beside the project's own checkout)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API (SQLite) for the session; request it to run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS ``weed mini`` S3 server for the session (loopback, own credentials)."""
    try:
        weed_binary()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    with seaweed_server(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


@pytest.fixture
def s3_env(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> SeaweedServer:
    """The standard AWS environment variables pointing at the session's server."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "FSSPEC_S3_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in seaweed.environment.items():
        monkeypatch.setenv(name, value)
    return seaweed


@pytest.fixture
def s3_prefix(seaweed: SeaweedServer) -> str:
    """A fresh ``s3://bucket/<unique>`` prefix for one test."""
    return f"s3://{seaweed.bucket}/{uuid.uuid4().hex[:12]}"
