"""What a training run reports: `metrics.json`, a loss-curve PNG and the per-epoch table.

History rows are `tasks.training.process.EpochRecorder`'s: `epoch`, `stage`, `layers`,
`learning_rate`, `seconds` and the Keras logs (`loss`, the five named losses, `val_*`).
The PNG is drawn with Pillow so that no plotting library is needed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from prefect.artifacts import create_table_artifact

from tasks import storage
from tasks.io_task import io_task
from tasks.training.runs import CURVE_FILE, METRICS_FILE, dump_json

LOSS_KEYS = (
    "loss",
    "rpn_class_loss",
    "rpn_bbox_loss",
    "mrcnn_class_loss",
    "mrcnn_bbox_loss",
    "mrcnn_mask_loss",
)
PLOTTED = LOSS_KEYS + ("val_loss",)
COLORS = ("#000000", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
SIZE, MARGINS = (800, 480), (60, 30, 190, 40)  # left, top, right, bottom


def loss_names(history: Sequence[dict[str, Any]]) -> list[str]:
    """Loss columns present in the history, training losses first, then `val_*`."""
    present = {key for row in history for key in row}
    names = [key for key in LOSS_KEYS if key in present]
    return names + [f"val_{key}" for key in LOSS_KEYS if f"val_{key}" in present]


def training_metrics(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary of a run: last epoch, final and best losses, total seconds, the history."""
    final = history[-1] if history else {}
    best = {}
    for key in ("loss", "val_loss"):
        rows = [row for row in history if _finite(row.get(key))]
        if rows:
            row = min(rows, key=lambda r: r[key])
            best[key] = {"value": row[key], "epoch": row["epoch"]}
    return {
        "epochs": final.get("epoch", 0),
        "final": {key: final[key] for key in loss_names(history) if key in final},
        "best": best,
        "seconds": round(sum(row.get("seconds", 0.0) for row in history), 3),
        "history": list(history),
    }


def table_rows(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch for a Prefect table artifact (losses rounded to 4 decimals)."""
    names = loss_names(history)
    return [
        {
            "epoch": row["epoch"],
            "stage": row["stage"],
            "layers": row["layers"],
            "learning_rate": row["learning_rate"],
            **{name: round(row[name], 4) if _finite(row.get(name)) else None for name in names},
        }
        for row in history
    ]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def loss_curve_png(history: Sequence[dict[str, Any]]) -> bytes:
    """Losses against epochs as PNG bytes; dotted lines mark where a stage begins."""
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    left, top, right, bottom = MARGINS
    width, height = SIZE[0] - left - right, SIZE[1] - top - bottom
    series = [name for name in PLOTTED if any(_finite(row.get(name)) for row in history)]
    epochs = [row["epoch"] for row in history] or [1]
    first, last = min(epochs) - 0.5, max(epochs) + 0.5
    values = [row[name] for row in history for name in series if _finite(row.get(name))]
    top_value = max(values, default=1.0) * 1.05 or 1.0

    def point(epoch: float, value: float) -> tuple[float, float]:
        return (
            left + (epoch - first) / (last - first) * width,
            top + height - min(value, top_value) / top_value * height,
        )

    draw.rectangle([left, top, left + width, top + height], outline="#444444")
    for i in range(6):
        value = top_value * i / 5
        y = point(first, value)[1]
        draw.line([left - 4, y, left, y], fill="#444444")
        draw.text((4, y - 6), f"{value:.3g}", fill="black", font=font)
    step = max(1, math.ceil(len(epochs) / 15))
    for epoch in epochs[::step]:
        x = point(epoch, 0)[0]
        draw.text((x - 6, top + height + 6), str(epoch), fill="black", font=font)
    for before, row in zip(history, history[1:]):
        if row["stage"] != before["stage"]:
            x = point(row["epoch"] - 0.5, 0)[0]
            for y in range(top, top + height, 8):
                draw.line([x, y, x, y + 3], fill="#888888")
    for index, name in enumerate(series):
        color = COLORS[index % len(COLORS)]
        points = [point(row["epoch"], row[name]) for row in history if _finite(row.get(name))]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        legend_y = top + 16 * index
        draw.rectangle(
            [SIZE[0] - right + 12, legend_y, SIZE[0] - right + 24, legend_y + 10], fill=color
        )
        draw.text((SIZE[0] - right + 30, legend_y - 1), name, fill="black", font=font)
    draw.text((left, 8), "loss per epoch (dotted: a new stage begins)", fill="black", font=font)
    draw.text((left + width // 2 - 14, SIZE[1] - 16), "epoch", fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@io_task(name="write-training-report")
def write_training_report(run_dir: str, history: list[dict[str, Any]]) -> dict[str, str]:
    """Write `metrics.json` and `loss_curve.png` to the run folder; show the losses table.

    Returns:
        `{"metrics": uri, "loss_curve": uri}`.
    """
    metrics = storage.write_bytes(
        storage.join(run_dir, METRICS_FILE), dump_json(training_metrics(history))
    )
    curve = storage.write_bytes(storage.join(run_dir, CURVE_FILE), loss_curve_png(history))
    create_table_artifact(
        table_rows(history), key="train-model-losses", description=f"losses per epoch of {run_dir}"
    )
    return {"metrics": metrics, "loss_curve": curve}
