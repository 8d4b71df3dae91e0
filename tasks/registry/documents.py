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
    lines = [
        f"# {decision['model']} v{decision['candidate']['version']}: {verdict} to "
        f"`{decision['alias']}`",
        "",
        f"**{'forced' if decision['forced'] else 'gate'}**: {decision['reason']}",
        "",
        f"| | version | {decision['metric']} |",
        "|---|---|---|",
        f"| candidate | v{decision['candidate']['version']} | "
        f"{_number(decision['candidate']['value'])} |",
    ]
    if current:
        lines.append(
            f"| current `{decision['alias']}` | v{current['version']} | "
            f"{_number(current['value'])} |"
        )
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def model_card(
    version: Any,
    classes: list[str],
    config: dict[str, Any],
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    int8_check: dict[str, Any] | None = None,
) -> str:
    """MODEL_CARD.md: what the model detects, how well, and where it comes from.

    ``int8_check``: the report of the version's INT8 export (``int8_check.json``), shown in a
    section of its own.
    """
    rows = ["| " + " | ".join(row.cells()) + " |" for row in accuracy_rows(metrics, classes)]
    warning = limit_warning(metrics)
    dataset = lineage.get("dataset") or {}
    stages = lineage.get("stages") or []
    lines = [
        f"# {version.name} v{version.version}",
        "",
        f"Mask R-CNN ({config.get('BACKBONE')}, {config.get('IMAGE_MAX_DIM')} px) detecting "
        f"{len(classes)} classes: {', '.join(classes)}.",
        "",
        "## Evaluation (validation split)",
        "",
        f"- {summary_line(metrics)}",
        f"- mean per-class area-ratio error: "
        f"{_number((metrics.get('area_ratio_error') or {}).get('mean_mae_pp'))} percentage points",
        *([f"- **warning**: {warning}"] if warning else []),
        "",
        "Coverage is the share of the image a class covers; its error is in percentage points "
        "(pp) per image, with a bootstrap 95 % interval over the images. Bias > 0: the model "
        "covers too much. The baselines are scored on the same images: predicting nothing, and "
        'Otsu\'s threshold on the grey image (single-class datasets only). "model vs" says '
        "whether the model's error is clearly lower (better), higher (worse) or neither.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *rows,
        "",
        "## Training",
        "",
        f"- dataset: `{dataset.get('uri')}` (sha256 `{dataset.get('hash')}`)",
        f"- initial weights: `{lineage.get('init_weights')}`",
        f"- precision: {'/'.join(lineage.get('training_precision') or ['float32'])}",
        *[
            f"- stage {i}: `{s['layers']}` to epoch {s['epochs']} at lr {s['learning_rate']:g}"
            for i, s in enumerate(stages, start=1)
        ],
        f"- flow run: `{lineage.get('flow_run_id')}`; "
        f"code: {_code_text(lineage.get('code_version'))}",
        "",
        *(_int8_section(int8_check) if int8_check else []),
        "## Use",
        "",
        "```python",
        "from tasks.models import build, resolve",
        f"model = build(resolve({version.reference!r}, {version.registry!r}))",
        "results = model.detect([image])  # RGB uint8 [H, W, 3]; model.class_names",
        "```",
        "",
    ]
    return "\n".join(lines)


def _int8_section(report: dict[str, Any]) -> list[str]:
    """The INT8 export's check: verdict, the three numbers against their limits, per class."""
    check = report["check"]
    limits = check["tolerances"]
    drop = check.get("ap50_drop")
    share = check.get("matched_share")
    rows = [f"| {c['name']} | {c['mean_pp']:.3f} | {c['max_pp']:.3f} |" for c in check["classes"]]
    return [
        "## INT8 export (OpenVINO)",
        "",
        f"`exports/openvino-int8/`: check **{'passed' if report['passed'] else 'failed'}** on "
        f"{check['images']} held-out images ({report['held_out']['source']}), calibrated on "
        f"{report['calibration']['images']} images ({report['calibration']['source']}); "
        f"run it with `--runtime openvino --precision int8`.",
        "",
        f"- area-ratio difference, worst class mean: {check['area_difference_pp']:.3f} pp "
        f"(limit {limits['area_difference_pp']})",
        f"- mask AP50 drop against {check['reference']}: {_number(drop)} "
        f"(limit {limits['ap50_drop']})",
        f"- float32 instances INT8 finds (mask IoU >= 0.5): {_number(share)} "
        f"(limit {limits['matched_share']})",
        f"- detect time on {report['machine']['cpu']}: float32 {check['seconds_float32']:.1f} s, "
        f"INT8 {check['seconds_int8']:.1f} s",
        "",
        "| class | mean difference (pp) | largest difference (pp) |",
        "|---|---|---|",
        *rows,
        "",
    ]


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
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"package": package, "git_commit": commit, "git_dirty": dirty}
