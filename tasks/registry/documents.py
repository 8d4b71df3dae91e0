"""The registry's human-readable documents: MODEL_CARD.md and the promotion decision report."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from tasks.accuracy_table import HEADER, accuracy_rows, limit_warning, summary_line


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
    rows = ["| " + " | ".join(row.cells()) + " |" for row in accuracy_rows(metrics, classes)]
    warning = limit_warning(metrics)
    dataset = lineage.get("dataset") or {}
    stages = lineage.get("stages") or []
    lines = [
        f"# {version.name} v{version.version}", "",
        f"Mask R-CNN ({config.get('BACKBONE')}, {config.get('IMAGE_MAX_DIM')} px) detecting "
        f"{len(classes)} classes: {', '.join(classes)}.", "",
        "## Evaluation (validation split)", "",
        f"- {summary_line(metrics)}",
        f"- mean per-class area-ratio error: "
        f"{_number((metrics.get('area_ratio_error') or {}).get('mean_mae_pp'))} percentage points",
        *([f"- **warning**: {warning}"] if warning else []), "",
        "Coverage is the share of the image a class covers; its error is in percentage points "
        "(pp) per image, with a bootstrap 95 % interval over the images. Bias > 0: the model "
        "covers too much. The baselines are scored on the same images: predicting nothing, and "
        "Otsu's threshold on the grey image (single-class datasets only). \"model vs\" says "
        "whether the model's error is clearly lower (better), higher (worse) or neither.", "",
        "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER), *rows, "",
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
