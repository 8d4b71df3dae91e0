"""Every module of the pipeline imports on its own, first: no import cycle hides behind order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "flows", "deployments", "mrcnn_pipeline")

# One interpreter; before each module, every project module is forgotten (the heavy
# libraries stay loaded), so each import runs as if it came first.
CHECK = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in {packages!r}]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{{name}}: {{type(error).__name__}}: {{error}}")
print("\\n".join(failed))
"""


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_each_module_imports_first_without_a_cycle():
    names = modules()
    assert "tasks.models.sources" in names and "tasks.tables.commit" in names
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(packages=set(PACKAGES)), *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
