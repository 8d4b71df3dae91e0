"""The nightly report over a generated month: a planted drift is flagged (table, page and
event), a stable class is not; the page opens in a real headless browser and shows the
registered accuracy of the night's model."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.nightly_report import EVENT, nightly_report
from tasks import registry
from tasks.evaluation import detection_limit, evaluate_results
from tasks.report.writing import read_model_accuracy
from tests.support.evaluation_samples import missed_one_samples
from tests.support.results_tables import Detected, Result, write_day, write_images

CLASSES = ("car", "pothole")
SIZE = 40
DAY = datetime.date(2026, 6, 30)


def square_of(share: float, rng: np.random.Generator) -> np.ndarray:
    """A square mask covering about ``share`` of the image, somewhere in it."""
    side = max(1, int(round(np.sqrt(share) * SIZE)))
    top, left = rng.integers(0, SIZE - side + 1, size=2)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def month(folder: Path, images_per_day: int = 25) -> Path:
    """30 days of results; on the last day potholes cover far more of the image."""
    rng = np.random.default_rng(0)
    out = folder / "results"
    for offset in range(30, -1, -1):
        day = DAY - datetime.timedelta(days=offset)
        results = []
        for k in range(images_per_day):
            pothole = rng.uniform(0.25, 0.45) if offset == 0 else rng.uniform(0.02, 0.06)
            found = (
                Detected(1, float(rng.uniform(0.8, 1.0)), square_of(rng.uniform(0.05, 0.1), rng)),
                Detected(2, float(rng.uniform(0.6, 1.0)), square_of(pothole, rng)),
            )
            results.append(
                Result(
                    str(folder / "in" / day.isoformat() / f"{k}.png"),
                    SIZE,
                    SIZE,
                    found if k % 10 else (),
                )
            )  # every tenth image: nothing found
        if offset == 0:
            write_images(results)  # the gallery reads them (no overlays were drawn)
        write_day(
            out, day.isoformat(), results, CLASSES, model=("roads", "2" if offset < 10 else "1")
        )
    return out


def read_events(event: str, run_date: str) -> list:
    """The events of that name and run_date the Prefect server has (they arrive shortly)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    async def read() -> list:
        async with get_client() as client:
            page = await client.read_events(
                EventFilter(event=EventNameFilter(name=[event])), limit=50
            )
            return [e for e in page.events if e.payload.get("run_date") == run_date]

    deadline = time.monotonic() + 30
    while True:
        found = asyncio.run(read())
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.mark.usefixtures("prefect_harness")
def test_a_planted_drift_is_flagged_and_the_page_shows_the_night(tmp_path: Path):
    out = month(tmp_path)
    summary = nightly_report(output=str(out), date=DAY, gallery=6)
    assert summary.drifting == ("pothole",) and summary.images == 25
    assert summary.report == str(out / "reports" / f"run_date={DAY}" / "index.html")
    drift = pd.read_parquet(out / "drift" / f"run_date={DAY}" / "part-0.parquet")
    flagged = drift.set_index(["class_name", "statistic"])
    assert (
        bool(flagged.loc[("pothole", "psi"), "drifting"])
        and not flagged.loc[("car", "psi"), "drifting"]
    )
    assert (
        flagged.loc[("pothole", "psi"), "value"] > 1.0 > 0.2 > flagged.loc[("car", "psi"), "value"]
    )
    assert flagged.loc[("pothole", "ks"), "value"] > flagged.loc[("pothole", "ks"), "threshold"]
    assert set(drift["window_images"]) == {700}  # the 28 days before the report day x 25 images

    page = (out / "reports" / f"run_date={DAY}" / "index.html").read_text()
    assert page.count("<svg") == 2 + 3 * len(CLASSES)
    assert "class <b>pothole</b> drifts" in page and "class <b>car</b> drifts" not in page
    assert page.count("<figure>") == 6 and not re.search(r"(src|href)=['\"]?https?:", page)

    events = read_events(EVENT, DAY.isoformat())
    assert len(events) == 1 and events[0].payload["classes"] == ["pothole"]
    assert {s["statistic"] for s in events[0].payload["statistics"]} == {"psi", "ks"}

    again = nightly_report(output=str(out), date=DAY, gallery=6)  # a re-run replaces, not adds
    assert len(pd.read_parquet(out / "drift")) == len(drift) and again.drifting == ("pothole",)


@pytest.mark.usefixtures("prefect_harness")
def test_the_command_prints_one_line_or_the_summary_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from mrcnn_pipeline.cli import main

    out = month(tmp_path)
    command = ["report", "--output", str(out), "--date", DAY.isoformat(), "--gallery", "0"]
    assert main([*command, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    page = out / "reports" / f"run_date={DAY}" / "index.html"
    assert (printed["report"], printed["drifting"], printed["images"]) == (
        str(page),
        ["pothole"],
        25,
    )
    assert printed["drift"].endswith(f"run_date={DAY}/part-0.parquet")
    assert all(
        set(jump) == {"rate", "today", "window_mean", "window_std"} for jump in printed["jumps"]
    )
    assert main(command) == 0
    assert capsys.readouterr().out == f"report: {page} (25 images; drifting: pothole)\n"


def test_a_stable_night_raises_nothing(tmp_path: Path):
    from tasks.report.drift import DriftSettings
    from tasks.report.history import read_history
    from tasks.report.summary import daily_overall, drift_rows, rate_jumps

    out = month(tmp_path)
    history = read_history(str(out), DAY - datetime.timedelta(days=1), 28)
    settings = DriftSettings()
    assert not any(row.drifting for row in drift_rows(history, settings))
    assert rate_jumps(daily_overall(history), history.day, settings) == []


def register_nuclei(root: Path) -> dict:
    """Register ``nuclei@v1`` with the metrics of an evaluation whose numbers are known, by a
    model returning at most 5 instances where an image holds 7."""
    weights = root.parent / "stand-in.weights.h5"  # registration checks the HDF5 signature only
    weights.write_bytes(registry.HDF5_SIGNATURE + b"nuclei")
    metrics = evaluate_results(["BG", "nucleus"], missed_one_samples(6))
    metrics["detection_limit"] = detection_limit(
        {"DETECTION_MAX_INSTANCES": 5}, metrics["largest_gt_instances"]
    ).as_dict()
    registry.register_version(
        str(root), "nuclei", str(weights), {"NUM_CLASSES": 2}, ["nucleus"], metrics, {}
    )
    return metrics


@pytest.mark.usefixtures("prefect_harness")
def test_the_page_shows_the_registered_accuracy_of_the_night_s_models(tmp_path: Path):
    register_nuclei(tmp_path / "registry")
    rng = np.random.default_rng(0)
    out = tmp_path / "results"
    for version in ("1", "sha256-0123456789abcdef"):  # a registry version, and a run folder's
        results = [
            Result(
                str(tmp_path / "in" / version / f"{k}.png"),
                SIZE,
                SIZE,
                (Detected(1, 0.9, square_of(0.1, rng)),),
            )
            for k in range(3)
        ]
        write_day(out, DAY.isoformat(), results, ("nucleus",), model=("nuclei", version))
    page = Path(
        nightly_report(
            output=str(out), date=DAY, gallery=0, registry=str(tmp_path / "registry")
        ).report
    ).read_text()
    section = page[page.index("<h2 id='accuracy'>") : page.index("<h2 id='class-nucleus'>")]
    assert "<h3>nuclei@1</h3>" in section and "6 images; COCO maxDets 100" in section
    # The evaluation's numbers (worked out in tests/tasks/test_registry.py): the model misses
    # one cell per image, which Otsu finds; COCO AP 78 of 101 recall points.
    assert (
        f"<td>nucleus</td><td>{78 / 101:.4f}</td><td>1.56 [1.56, 1.56]</td><td>-1.56</td>"
        "<td>0.23</td>"
    ) in section
    assert "<td>0.00 [0.00, 0.00]</td><td>better / worse</td>" in section
    assert (
        "<p class='alert'>warning: DETECTION_MAX_INSTANCES 5 is below the 7 instances of "
        "the fullest val image"
    ) in section
    assert "<h3>nuclei@sha256-0123456789abcdef</h3>\n<p>not a registry version" in section


def test_without_the_registry_or_its_metrics_the_section_says_why(tmp_path: Path):
    models = [("nuclei", "1"), ("ghost", "3")]
    assert [m.missing for m in read_model_accuracy.fn(None, models)] == [
        "no registry given: run the report with the model registry to show its evaluation"
    ] * 2
    register_nuclei(tmp_path / "registry")
    found, missing = read_model_accuracy.fn(str(tmp_path / "registry"), models)
    assert found.rows[0].class_name == "nucleus" and found.missing is None
    assert found.warning.startswith("DETECTION_MAX_INSTANCES 5 is below the 7 instances")
    assert (
        missing.missing
        == (f"metrics '{tmp_path}/registry/ghost/versions/3/metrics.json' not found")
        and not missing.rows
    )


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium; `make setup` "
            "does it when run as root)"
        )
    return found


@pytest.mark.usefixtures("prefect_harness")
def test_the_page_renders_in_a_headless_browser(tmp_path: Path):
    browser = chromium()
    out = month(tmp_path)
    page = Path(nightly_report(output=str(out), date=DAY, gallery=6).report)
    shot = tmp_path / "report.png"
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--virtual-time-budget=5000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1400,3000", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count("<svg") == 2 + 3 * len(CLASSES) and dom.count("<img") == 6
    assert 'id="gallery"' in dom and 'id="alerts"' in dom
    # Every picture is inline: nothing for the browser to fetch, so nothing can fail to load.
    assert all(src.startswith("data:image/jpeg;base64,") for src in _attributes(dom, "img", "src"))
    keep = Path(__file__).resolve().parents[2] / ".pytest_cache" / "nightly_report.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copy(shot, keep)  # for a person to look at after the run


def _attributes(dom: str, tag: str, name: str) -> list[str]:
    import html.parser

    found = []

    class Parser(html.parser.HTMLParser):
        def handle_starttag(self, seen, attributes):
            if seen == tag:
                found.append(dict(attributes).get(name, ""))

    Parser().feed(dom)
    return found


def test_the_documented_automation_is_one_prefect_accepts():
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    path = Path(__file__).resolve().parents[2] / "deployments" / "drift-automation.yaml"
    automation = AutomationCore.model_validate(yaml.safe_load(path.read_text()))
    assert automation.trigger.expect == {EVENT}
