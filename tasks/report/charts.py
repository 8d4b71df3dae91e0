"""The report's charts as inline SVG text (matplotlib, Agg backend: no display needed).

Dates run along the x axis as ISO strings; the report day is a vertical red line, model
version changes dashed grey lines, so a jump that comes with a new model says so.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

SIZE = (6.4, 2.6)  # inches; at 100 dpi a chart fits beside the numbers on a laptop screen


def daily_lines(
    days: Sequence[str],
    series: Mapping[str, Sequence[float]],
    today: str,
    changes: Sequence[str],
    title: str,
    percent: bool = False,
) -> str:
    """One line per series over the days; the report day and model changes marked."""
    figure, axes = plt.subplots(figsize=SIZE)
    try:
        positions = {day: index for index, day in enumerate(days)}
        for name, values in series.items():
            axes.plot(range(len(days)), values, marker=".", label=name)
        for day in changes:
            axes.axvline(positions[day], color="grey", linestyle="--", linewidth=1)
        if today in positions:
            axes.axvline(positions[today], color="red", linewidth=1.5, label="report day")
        axes.set_xticks(range(len(days)))
        axes.set_xticklabels([day[5:] for day in days], rotation=90, fontsize=6)
        if percent:
            axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_title(title, fontsize=9)
        axes.legend(fontsize=7, loc="upper left")
        return _svg(figure)
    finally:
        plt.close(figure)


def distributions(
    labels: Sequence[str], today: Sequence[float], window: Sequence[float], title: str
) -> str:
    """Side-by-side bars: share of images per area bin, report day against the window."""
    figure, axes = plt.subplots(figsize=SIZE)
    try:
        positions = range(len(labels))
        axes.bar([p - 0.2 for p in positions], window, width=0.4, label="window")
        axes.bar([p + 0.2 for p in positions], today, width=0.4, label="report day")
        axes.set_xticks(list(positions))
        axes.set_xticklabels(labels, fontsize=7)
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
        axes.set_title(title, fontsize=9)
        axes.legend(fontsize=7)
        return _svg(figure)
    finally:
        plt.close(figure)


def _svg(figure: plt.Figure) -> str:
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # no clock in the page
    return text[text.index("<svg") :]  # inline: no XML prologue inside HTML
