"""The nuclei walk-through (docs/tutorials/nuclei.md) on six real microscope images.

convert --format mask-folders -> train (docs/examples/nuclei.yaml, auto_config, a 3-second
budget) -> evaluate -> register -> infer over the sample folders -> report, all through the
CLI, on images of ``../shared/data/nuclei_dsb2018`` (skipped where that is absent). The first
step alone outlasts the budget, so no stage runs more than one step and the model learns
nothing; the test checks what each step hands the next.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from mrcnn_pipeline.cli import main
from tasks import registry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "nuclei.yaml"
DAY = "2024-06-01"
# Four 256² images and two larger ones, so that training crops and inference pads.
SIZES = {(256, 256): 4, (520, 696): 1, (360, 360): 1}
IMAGES = sum(SIZES.values())


@pytest.fixture(scope="module")
def samples(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Six sample folders copied from the nuclei set, and their manifest rows by id."""
    source = shared_data / "nuclei_dsb2018"
    rows = list(csv.DictReader((source / "manifest.csv").open()))
    wanted, chosen = dict(SIZES), {}
    for row in rows:
        size = (int(row["height"]), int(row["width"]))
        if wanted.get(size, 0) > 0:
            wanted[size] -= 1
            chosen[row["image_id"]] = row
    folder = tmp_path_factory.mktemp("nuclei") / "stage1_train"
    for image_id in chosen:
        shutil.copytree(source / "stage1_train" / image_id, folder / image_id)
    return folder, chosen


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_microscope_folders_to_coverage_through_the_cli(samples, tmp_path: Path, capsys):
    folder, manifest = samples
    dataset, reg, results = tmp_path / "dataset", tmp_path / "registry", tmp_path / "results"
    assert (
        main(
            [
                "convert",
                "--format",
                "mask-folders",
                "--input",
                str(folder),
                "--output",
                str(dataset),
                "--class",
                "nucleus",
                "--val-fraction",
                "0.3",
                "--json",
            ]
        )
        == 0
    )
    converted = json.loads(capsys.readouterr().out)
    assert converted["items"]["converted"] == IMAGES
    val = json.loads((dataset / "annotations" / "val.json").read_text())
    assert val["images"], "the split must leave images to evaluate on"

    config = yaml.safe_load(EXAMPLE.read_text())
    config["minutes"] = 0.05  # at most one step per stage; the run still ends by its budget
    (tmp_path / "nuclei.yaml").write_text(yaml.safe_dump(config))
    assert (
        main(
            [
                "train",
                "--dataset",
                str(dataset),
                "--config",
                str(tmp_path / "nuclei.yaml"),
                "--registry",
                str(reg),
                "--json",
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out)
    chosen = {row["key"]: row for row in trained["auto_config"]}
    assert (
        chosen["IMAGE_RESIZE_MODE"]["value"] == "crop" and chosen["IMAGE_MIN_DIM"]["value"] >= 128
    )
    assert chosen["MEAN_PIXEL"]["value"][0] < 60  # dark fluorescence images
    run = json.loads((Path(trained["run_dir"]) / "run.json").read_text())
    assert run["auto_config"] == trained["auto_config"]

    assert (
        main(
            [
                "evaluate",
                "--model",
                trained["run_dir"],
                "--dataset",
                str(dataset),
                "--registry",
                str(reg),
                "--json",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    nucleus = metrics["area_ratio_error"]["per_class"]["nucleus"]
    assert nucleus["baselines"]["otsu"]["applicable"] is True
    assert len(nucleus["mae_ci95_pp"]) == 2 and "bias_pp" in nucleus
    assert metrics["largest_gt_instances"] >= 1

    assert (
        main(["register", "--run-dir", trained["run_dir"], "--registry", str(reg), "--json"]) == 0
    )
    capsys.readouterr()
    assert registry.resolve("nuclei@production", str(reg)).version == 1

    assert (
        main(
            [
                "infer",
                "--model",
                "nuclei@production",
                "--registry",
                str(reg),
                "--input",
                str(folder),
                "--pattern",
                "*/images/*.png",
                "--output",
                str(results),
                "--run-date",
                DAY,
                "--json",
            ]
        )
        == 0
    )
    inferred = json.loads(capsys.readouterr().out)
    assert (inferred["processed"], inferred["errors"]) == (IMAGES, 0)
    areas = pq.read_table(results / "area_ratios").to_pandas()
    assert sorted(areas["class_name"].unique()) == ["nucleus"] and len(areas) == IMAGES
    assert {Path(uri).stem for uri in areas["image_uri"]} == set(manifest)

    assert (
        main(["report", "--output", str(results), "--date", DAY, "--registry", str(reg), "--json"])
        == 0
    )
    page = Path(json.loads(capsys.readouterr().out)["report"])
    assert page.is_file() and "nucleus" in page.read_text()
