"""The performance page says what its result files hold: date, command, peer and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "performance.md"
RESULTS = REPO / "benchmarks" / "results"


def table_rows(lines: list[str], start: int) -> list[list[str]]:
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_every_measurement_row_matches_its_result_file():
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("| measurement | date |")]
    assert len(headers) == 2, "one table per CPU class"
    for header in headers:
        for what, date, command, peer, _, file in table_rows(lines, header):
            path = REPO / file.strip("`")
            assert path.is_file(), f"{what}: {file} does not exist"
            stored = json.loads(path.read_text())
            # A file of several runs (same benchmark, one after the other): the row cites one.
            runs = stored.get("runs") or [stored]
            matching = [run for run in runs if command == f"`{run['command']}`"]
            assert matching, f"{what}: no run of {file} has the command {command}"
            stored = matching[0]
            started = stored.get("started") or stored.get("before", {}).get("started", "")
            assert started.startswith(date), f"{what}: {file} started {started}, not {date}"
            settings = stored.get("settings") or stored.get("before", {}).get("settings", {})
            if settings.get("peer") == "torchvision":
                assert peer.startswith("torchvision"), what
            elif str(settings.get("peer", "")).startswith("none"):
                assert not peer.startswith("torchvision"), what


def test_the_comparison_tables_hold_the_stored_medians_and_ratios():
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    checked = 0
    for index, line in enumerate(lines):
        marker = re.fullmatch(r"<!-- figures: (\S+\.json) -->", line)
        if not marker:
            continue
        ratios = json.loads((RESULTS / marker.group(1)).read_text())["ratios"]
        for cells in table_rows(lines, index + 1):
            size, batch = map(int, re.findall(r"\d+", cells[0])[:2])
            task = "train" if cells[0].startswith("train") else "inference"
            for precision, columns in (("fp32", cells[1:4]), ("bf16", cells[4:7])):
                (stored,) = [
                    r
                    for r in ratios
                    if (r["task"], r["precision"], r["size"], r["batch"])
                    == (task, precision, size, batch)
                ]
                shown = [float(c.strip("*")) for c in columns]
                assert shown == [
                    round(stored["ours_median"], 2),
                    round(stored["torchvision_median"], 2),
                    round(stored["ratio_ours_over_torchvision"], 2),
                ], cells[0]
                checked += 1
    assert checked >= 10
