"""The whole tree passes ruff: the lint rules and the formatter configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the environment's ruff (the dev extra pins it) from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "arguments",
    [("check", "--no-cache", "."), ("format", "--check", "--no-cache", ".")],
    ids=["check", "format"],
)
def test_ruff_is_clean(arguments: tuple[str, ...]):
    done = ruff(*arguments)
    assert done.returncode == 0, f"ruff {' '.join(arguments)}:\n{done.stdout}{done.stderr}"
