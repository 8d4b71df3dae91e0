"""The report as one self-contained HTML page: inline SVG charts and thumbnails, no scripts,
nothing fetched from elsewhere (links to the full overlays are relative, so the folder can be
copied or served as it is)."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence

import pandas as pd

from tasks.accuracy_table import HEADER
from tasks.report.accuracy import ModelAccuracy
from tasks.report.drift import DriftRow, RateJump
from tasks.report.gallery import GalleryItem

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.alert{background:#fde8e8;border-left:4px solid #c00;padding:.5em 1em}
.ok{background:#e8f6e8;border-left:4px solid #080;padding:.5em 1em}
.charts{display:flex;flex-wrap:wrap;gap:8px}.charts svg{max-width:640px;height:auto}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.gallery figure{margin:0;width:240px}
figcaption{font-size:.75em;word-break:break-all}"""


@dataclasses.dataclass(frozen=True)
class ClassSection:
    """What the page shows of one class."""

    name: str
    trend_chart: str
    distribution_chart: str
    counts_chart: str
    drift: tuple[DriftRow, ...]


@dataclasses.dataclass(frozen=True)
class ReportPage:
    """Everything the page shows."""

    day: str
    output: str
    key_numbers: dict[str, str]
    overall_charts: tuple[str, ...]
    classes: tuple[ClassSection, ...]
    jumps: tuple[RateJump, ...]
    errors_by_type: dict[str, int]
    gallery: tuple[GalleryItem, ...]
    breakdown: pd.DataFrame | None = None
    breakdown_field: str | None = None
    accuracy: tuple[ModelAccuracy, ...] = ()


def render(page: ReportPage) -> str:
    """The HTML text of the page."""
    drifting = sorted({row.class_name for c in page.classes for row in c.drift if row.drifting})
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Nightly report {_e(page.day)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Nightly report {_e(page.day)}</h1><p>results: <code>{_e(page.output)}</code></p>",
        _alerts(drifting, page.jumps),
        _table(["", "value"], page.key_numbers.items()),
        "<h2>The night</h2><div class='charts' id='overall'>",
        *page.overall_charts,
        "</div>",
        _errors(page.errors_by_type),
        _accuracy(page.accuracy),
    ]
    for section in page.classes:
        parts += [
            f"<h2 id='class-{_e(section.name)}'>{_e(section.name)}</h2>",
            "<div class='charts'>",
            section.trend_chart,
            section.distribution_chart,
            section.counts_chart,
            "</div>",
            _drift_table(section.drift),
        ]
    if page.breakdown is not None and len(page.breakdown):
        parts += [f"<h2>By {_e(page.breakdown_field)}</h2>", _frame(page.breakdown)]
    parts += [
        "<h2>Worth a look</h2><div class='gallery' id='gallery'>",
        *[_figure(item) for item in page.gallery],
        "</div></body></html>",
    ]
    return "\n".join(parts)


def _alerts(drifting: Sequence[str], jumps: Sequence[RateJump]) -> str:
    lines = [f"class <b>{_e(name)}</b> drifts from the window" for name in drifting]
    lines += [
        f"{_e(j.rate)} {100 * j.today:.1f} % against {100 * j.window_mean:.1f} % "
        f"(± {100 * j.window_std:.1f}) in the window"
        for j in jumps
    ]
    if not lines:
        return "<p class='ok'>No drift and no jump in errors or empty results.</p>"
    return "<div class='alert' id='alerts'>" + "<br>".join(lines) + "</div>"


def _accuracy(models: Sequence[ModelAccuracy]) -> str:
    """Each model version's registered evaluation (see ``tasks.report.accuracy``)."""
    if not models:
        return ""
    parts = [
        "<h2 id='accuracy'>Model accuracy on its val split</h2>",
        "<p>Coverage error in percentage points per image, with a bootstrap 95 % interval; "
        "the baselines are scored on the same images (Otsu: single-class models only). "
        "These are the registered evaluation's numbers, not tonight's images.</p>",
    ]
    for model in models:
        parts.append(f"<h3>{_e(model.identity)}</h3>")
        if model.missing:
            parts.append(f"<p>{_e(model.missing)}</p>")
        if model.summary:
            parts.append(f"<p>{_e(model.summary)}</p>")
        if model.warning:
            parts.append(f"<p class='alert'>warning: {_e(model.warning)}</p>")
        if model.rows:
            parts.append(_table(HEADER, [row.cells() for row in model.rows]))
    return "\n".join(parts)


def _errors(errors: dict[str, int]) -> str:
    if not errors:
        return "<p>No image failed.</p>"
    return "<p>Errors by type:</p>" + _table(["error_type", "images"], sorted(errors.items()))


def _drift_table(rows: Sequence[DriftRow]) -> str:
    return _table(
        ["statistic", "value", "threshold", "drifting", "images (day / window)"],
        [
            (
                r.statistic,
                f"{r.value:.3f}",
                f"{r.threshold:.3f}",
                "yes" if r.drifting else "no",
                f"{r.today_images} / {r.window_images}",
            )
            for r in rows
        ],
    )


def _figure(item: GalleryItem) -> str:
    image = f"<img src='{item.thumbnail}' alt='{_e(item.image_uri)}' width='240'>"
    if item.link:
        image = f"<a href='{_e(item.link)}'>{image}</a>"
    return (
        f"<figure>{image}<figcaption>{_e(item.image_uri)}<br>{_e(item.reason)}"
        f"</figcaption></figure>"
    )


def _frame(frame: pd.DataFrame) -> str:
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    return _table(list(frame.columns), rows)


def _table(header: Sequence[str], rows) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
