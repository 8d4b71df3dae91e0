"""Storage by URI: local paths and a real S3 server (SeaweedFS), credentials from the
environment, clear errors for refused access."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tasks import storage


def round_trip(root: str) -> None:
    """The same script against any filesystem."""
    a = storage.join(root, "x", "a.json")
    assert storage.write_bytes(a, b"{}") == a
    storage.write_bytes(storage.join(root, "x/sub/b.PNG"), b"png")
    storage.write_bytes(storage.join(root, "c.txt"), b"text")
    assert storage.read_bytes(a) == b"{}"
    assert storage.exists(a) and storage.is_file(a)
    assert storage.exists(storage.join(root, "x"))
    assert not storage.is_file(storage.join(root, "x"))
    listed = storage.list_files(root)
    assert [storage.relative_path(u, root) for u in listed] == [
        "c.txt",
        "x/a.json",
        "x/sub/b.PNG",
    ]
    assert storage.list_files(root, (".png", ".json")) == listed[1:]
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "missing.json"))
    storage.remove(storage.join(root, "x"))
    storage.remove(storage.join(root, "never-was"))
    assert not storage.exists(a)
    assert storage.list_files(storage.join(root, "nothing-here")) == []


def test_local_paths(tmp_path: Path):
    round_trip(str(tmp_path / "root"))


def test_memory_filesystem():
    round_trip(f"memory://test-{uuid.uuid4().hex}")


def test_local_write_leaves_no_temporary_file(tmp_path: Path):
    target = tmp_path / "deep" / "a.bin"
    storage.write_bytes(str(target), b"1")
    storage.write_bytes(str(target), b"22")
    assert target.read_bytes() == b"22" and [p.name for p in target.parent.iterdir()] == ["a.bin"]


def test_a_probe_keeps_or_tidies_the_folders_it_made(tmp_path: Path):
    storage.probe_writable(str(tmp_path / "kept" / "out"))
    assert [p.name for p in (tmp_path / "kept" / "out").iterdir()] == ["_manifest"]
    assert list((tmp_path / "kept" / "out" / "_manifest").iterdir()) == []
    storage.probe_writable(str(tmp_path / "tidy" / "out"), keep_folders=False)
    assert not (tmp_path / "tidy").exists()


# A file-size limit of 0 lets the probe make its folders, then refuses its first byte (EFBIG):
# the failure after mkdir that a full disk gives, without mounting one.
_PROBE_WITHOUT_FILE_SPACE = """
import resource, signal, sys
from tasks import storage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
try:
    storage.probe_writable(sys.argv[1])
except OSError as error:
    print(type(error).__name__, error)
"""


def test_a_failed_probe_removes_the_folders_it_made(tmp_path: Path):
    out = tmp_path / "new" / "out"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE_WITHOUT_FILE_SPACE, str(out)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        done.stdout == f"OutputNotWritable output folder '{out}' is not writable: File too large\n"
    ), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_join_and_inside(tmp_path: Path):
    assert storage.join("s3://b/p/", "/images/", "a.jpg") == "s3://b/p/images/a.jpg"
    assert storage.join("/data", "") == "/data"
    assert storage.is_inside(str(tmp_path / "a" / "b"), str(tmp_path / "a"))
    assert storage.is_inside(str(tmp_path / "a"), str(tmp_path / "a/"))
    assert not storage.is_inside(str(tmp_path / "ab"), str(tmp_path / "a"))
    assert not storage.is_inside("s3://b/a/x", str(tmp_path / "a"))
    with pytest.raises(ValueError, match="is not inside"):
        storage.relative_path(str(tmp_path / "b"), str(tmp_path / "a"))


def test_s3_with_credentials_from_the_environment(s3_env, s3_prefix: str):
    round_trip(s3_prefix)


def test_s3_endpoint_from_fsspec_variable(s3_env, s3_prefix: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", s3_env.endpoint)
    uri = storage.join(s3_prefix, "a.txt")
    storage.write_bytes(uri, b"via fsspec variable")
    assert storage.read_bytes(uri) == b"via fsspec variable"


def test_s3_wrong_credentials_are_refused_clearly(
    s3_env, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
):
    uri = storage.join(s3_prefix, "secret.txt")
    storage.write_bytes(uri, b"data")
    wrong_secret = "wrong-secret-do-not-print"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
    for action in (
        lambda: storage.read_bytes(uri),
        lambda: storage.write_bytes(uri, b"x"),
        lambda: storage.list_files(s3_prefix),
    ):
        with pytest.raises(PermissionError) as caught:
            action()
        message = str(caught.value)
        assert f"access denied to '{s3_prefix}" in message and "AWS_SECRET_ACCESS_KEY" in message
        assert wrong_secret not in message and s3_env.secret not in message
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unknown-key")
    with pytest.raises(PermissionError, match="access denied"):
        storage.read_bytes(uri)


def test_copy_between_local_and_s3(s3_env, s3_prefix: str, tmp_path: Path):
    local = tmp_path / "a.bin"
    local.write_bytes(b"\x00\x01")
    storage.copy_file(str(local), storage.join(s3_prefix, "a.bin"))
    storage.copy_file(storage.join(s3_prefix, "a.bin"), str(tmp_path / "back" / "a.bin"))
    assert (tmp_path / "back" / "a.bin").read_bytes() == b"\x00\x01"
