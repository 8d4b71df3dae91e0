"""The registry's human-readable documents: MODEL_CARD.md and the promotion decision report."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def decision_markdown(decision: dict[str, Any]) -> str:
    """The promotion decision as a markdown report (for an artifact)."""
    current = decision["current"]
    verdict = "promoted" if decision["promoted"] else "not promoted"
    lines = [f"# {decision['model']} v{decision['candidate']['version']}: {verdict} to "
             f"`{decision['alias']}`", "",
             f"**{'forced' if decision['forced'] else 'gate'}**: {decision['reason']}", "",
             f"| | version | {decision['metric']} |", "|---|---|---|",
             f"| candidate | v{decision['candidate']['version']} | "
             f"{_number(decision['candidate']['value'])} |"]
    if current:
        lines.append(f"| current `{decision['alias']}` | v{current['version']} | "
                     f"{_number(current['value'])} |")
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def model_card(version: Any, classes: list[str], config: dict[str, Any],
               metrics: dict[str, Any], lineage: dict[str, Any]) -> str:
    """MODEL_CARD.md: what the model detects, how well, and where it comes from."""
    per_class_ap = (metrics.get("segm") or {}).get("per_class") or {}
    area = (metrics.get("area_ratio_error") or {}).get("per_class") or {}
    rows = [f"| {name} | {_number(per_class_ap.get(name))} | "
            f"{_number((area.get(name) or {}).get('mae_pp'))} |" for name in classes]
    dataset = lineage.get("dataset") or {}
    stages = lineage.get("stages") or []
    lines = [
        f"# {version.name} v{version.version}", "",
        f"Mask R-CNN ({config.get('BACKBONE')}, {config.get('IMAGE_MAX_DIM')} px) detecting "
        f"{len(classes)} classes: {', '.join(classes)}.", "",
        "## Evaluation (validation split)", "",
        f"- segm AP {_number((metrics.get('segm') or {}).get('AP'))}, "
        f"bbox AP {_number((metrics.get('bbox') or {}).get('AP'))}, "
        f"segm AP50 {_number((metrics.get('segm') or {}).get('AP50'))}, "
        f"images {metrics.get('images', 'n/a')}",
        f"- mean per-class area-ratio error: "
        f"{_number((metrics.get('area_ratio_error') or {}).get('mean_mae_pp'))} percentage points", "",
        "| class | segm AP | area-ratio MAE (pp) |", "|---|---|---|", *rows, "",
        "## Training", "",
        f"- dataset: `{dataset.get('uri')}` (sha256 `{dataset.get('hash')}`)",
        f"- initial weights: `{lineage.get('init_weights')}`",
        f"- precision: {'/'.join(lineage.get('training_precision') or ['float32'])}",
        *[f"- stage {i}: `{s['layers']}` to epoch {s['epochs']} at lr {s['learning_rate']:g}"
          for i, s in enumerate(stages, start=1)],
        f"- flow run: `{lineage.get('flow_run_id')}`; code: {_code_text(lineage.get('code_version'))}",
        "",
        "## Use", "",
        "```python",
        "from tasks.models import build, resolve",
        f"model = build(resolve({version.reference!r}, {version.registry!r}))",
        "results = model.detect([image])  # RGB uint8 [H, W, 3]; model.class_names",
        "```", "",
    ]
    return "\n".join(lines)


def _code_text(code: dict[str, Any] | None) -> str:
    if not code:
        return "unknown"
    commit = f", commit `{code['git_commit'][:12]}`" if code.get("git_commit") else ""
    changes = " with local changes" if code.get("git_dirty") else ""
    return f"mrcnn-pipeline {code.get('package')}{commit}{changes}"


def code_version() -> dict[str, Any]:
    """The package version and, in a git checkout, the commit and whether it had changes."""
    try:
        package = metadata.version("mrcnn-pipeline")
    except metadata.PackageNotFoundError:
        package = None
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                                    text=True, timeout=10, check=True).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"package": package, "git_commit": commit, "git_dirty": dirty}
