"""INT8 exports end to end: quantized, checked, written only when passed, run only when asked.

The model is the tiny random-weight one (`tests.support.tiny_model`): its INT8 twin differs
from float32 by more than the documented defaults allow, which is what the refusal tests use;
the tests of a passed export open the limits wide (the accuracy of INT8 on a trained model is
measured in docs/tutorials/int8.md, not here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mrcnn.config import Config
from mrcnn_pipeline.cli import main
from tasks import registry, storage
from tasks.models import resolve
from tasks.models.int8 import CHECK_FILE, Int8Request, image_sets
from tests.flows.test_training_flows import SHAPES, write_canonical
from tests.support.tiny_model import CLASS_NAMES, distinct_model_dir, png_bytes

pytest.importorskip("nncf")

DAY = "2024-05-01"
WIDE_OPEN = ["--max-area-difference", "100", "--max-ap50-drop", "1", "--min-matched-share", "0"]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = distinct_model_dir()
    reg = str(tmp_path_factory.mktemp("registry"))
    version = registry.register_version(
        reg,
        "tiny",
        str(folder / "model.weights.h5"),
        json.loads((folder / "config.json").read_text()),
        CLASS_NAMES,
        {},
        {},
    )
    registry.set_alias(version, "production")
    return reg


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for index in range(10):
        (folder / f"{index}.png").write_bytes(png_bytes(64, 48 + 2 * index, seed=index))
    return folder


def export_int8(reg: str, images: Path, *options: str) -> int:
    return main(
        [
            "export-model",
            "--model",
            "tiny@production",
            "--registry",
            reg,
            "--format",
            "openvino",
            "--precision",
            "int8",
            "--calibration",
            str(images),
            "--calibration-images",
            "4",
            "--check-images",
            "3",
            "--json",
            *options,
        ]
    )


def infer(images: Path, out: Path, model: str, reg: str, *options: str) -> int:
    return main(
        [
            "infer",
            "--model",
            model,
            "--registry",
            reg,
            "--input",
            str(images),
            "--output",
            str(out),
            "--run-date",
            DAY,
            "--no-overlays",
            "--no-csv",
            "--json",
            *options,
        ]
    )


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def passed_export(registered: str, images: Path) -> str:
    assert export_int8(registered, images, *WIDE_OPEN) == 0
    return storage.join(registered, "tiny", "versions", "1", "exports", "openvino-int8")


@pytest.mark.usefixtures("prefect_harness")
def test_a_passed_export_sits_beside_its_version_and_runs_in_infer(
    registered: str, images: Path, passed_export: str, tmp_path: Path, capsys
):
    report = json.loads(Path(passed_export, CHECK_FILE).read_text())
    assert report["passed"] and report["check"]["images"] == 2  # the hashed fifth of 10
    assert report["calibration"]["images"] == 4 and report["quantization"]["quantizers"] > 0
    card = Path(registered, "tiny", "versions", "1", "MODEL_CARD.md").read_text()
    assert "## INT8 export (OpenVINO)" in card and "check **passed** on 2 held-out" in card
    artifact = resolve(passed_export)
    assert (artifact.identity, artifact.format, artifact.int8_check) == (
        "tiny@1-int8",
        "openvino",
        "passed",
    )
    capsys.readouterr()
    assert (
        infer(
            images,
            tmp_path / "out",
            passed_export,
            registered,
            "--runtime",
            "openvino",
            "--precision",
            "int8",
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert (summary["precision"], summary["model_version"], summary["processed"]) == (
        ["int8"],
        "1-int8",
        10,
    )
    areas = pd.read_parquet(tmp_path / "out" / "area_ratios")
    assert set(areas["model_version"]) == {"1-int8"} and len(areas) == 10 * len(CLASS_NAMES)


def test_a_check_beyond_its_limits_writes_nothing(
    registered: str, images: Path, tmp_path: Path, capsys
):
    output = tmp_path / "refused"
    assert (
        export_int8(registered, images, "--max-area-difference", "0", "--output", str(output)) == 1
    )
    line = one_error_line(capsys)
    assert line.startswith("mrcnn-pipeline export-model: error: INT8 check on 2 images failed: ")
    assert "pp on average (limit 0.0)" in line and line.endswith(f"nothing written to {output}")
    assert not output.exists()


@pytest.mark.usefixtures("prefect_harness")
def test_int8_runs_only_an_int8_export_that_passed_and_only_when_asked(
    registered: str, images: Path, passed_export: str, tmp_path: Path, capsys
):
    assert (
        main(
            [
                "export-model",
                "--model",
                "tiny@production",
                "--registry",
                registered,
                "--format",
                "openvino",
                "--output",
                str(tmp_path / "float32"),
            ]
        )
        == 0
    )
    failed = tmp_path / "failed"
    assert (
        export_int8(
            registered,
            images,
            "--max-area-difference",
            "0",
            "--write-failed",
            "--output",
            str(failed),
        )
        == 0
    )
    assert json.loads((failed / CHECK_FILE).read_text())["passed"] is False
    capsys.readouterr()
    cases = [
        (tmp_path / "float32", "int8", "is not an INT8 export (format openvino, float32)"),
        (failed, "int8", f"INT8 export {str(failed)!r} failed its check"),
        (passed_export, "auto", "is an INT8 export: run it with --precision int8"),
        (passed_export, "float32", "is an INT8 export: run it with --precision int8"),
    ]
    for model, precision, message in cases:
        assert (
            infer(
                images,
                tmp_path / "out",
                str(model),
                registered,
                "--runtime",
                "openvino",
                "--precision",
                precision,
            )
            == 1
        )
        line = one_error_line(capsys)
        assert line.startswith("mrcnn-pipeline infer: error: ") and message in line, line
    assert not (tmp_path / "out" / "area_ratios").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_auto_never_switches_a_registered_model_to_int8(
    registered: str, images: Path, passed_export: str, tmp_path: Path, capsys
):
    """The tables of the registered model are the same with and without its INT8 export."""
    assert Path(passed_export, CHECK_FILE).is_file()
    before = tmp_path / "before"
    assert (
        infer(images, tmp_path / "auto", "tiny@production", registered, "--precision", "auto") == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_version"] == "1" and "int8" not in summary["precision"]
    moved = Path(passed_export).with_name("moved-away")
    Path(passed_export).rename(moved)
    try:
        assert infer(images, before, "tiny@production", registered, "--precision", "auto") == 0
    finally:
        moved.rename(passed_export)
    keys = ["image_uri", "class_name"]
    with_export = pd.read_parquet(tmp_path / "auto" / "area_ratios").sort_values(keys)
    without = pd.read_parquet(before / "area_ratios").sort_values(keys)
    pd.testing.assert_frame_equal(
        with_export[keys + ["model_version", "area_ratio"]].reset_index(drop=True),
        without[keys + ["model_version", "area_ratio"]].reset_index(drop=True),
    )


def test_images_come_from_a_dataset_split_or_a_folder_local_or_on_s3(
    images: Path, tmp_path: Path, s3_env, s3_prefix: str
):
    dataset = write_canonical(tmp_path / "dataset", train=3, val=2)
    config = Config(NAME="shapes", NUM_CLASSES=1 + len(SHAPES))
    calibration, held_out = image_sets(Int8Request(dataset), SHAPES, config, str(tmp_path / "work"))
    assert (len(calibration.uris), len(held_out.uris)) == (3, 2)
    assert held_out.truth is not None and "val split" in held_out.description
    with pytest.raises(ValueError, match="differ from the categories of dataset"):
        image_sets(Int8Request(dataset), ["square", "circle"], config, str(tmp_path / "work"))
    for path in sorted(images.iterdir()):
        storage.write_bytes(f"{s3_prefix}/images/{path.name}", path.read_bytes())
    calibration, held_out = image_sets(
        Int8Request(f"{s3_prefix}/images"), CLASS_NAMES, config, "unused"
    )
    assert len(calibration.uris) == 8 and held_out.truth is None
    assert held_out.images(1)[0].shape[0] == 64 and len(calibration.images(3)) == 3
    with pytest.raises(FileNotFoundError, match=f"calibration images '{s3_prefix}/nothing'"):
        image_sets(Int8Request(f"{s3_prefix}/nothing"), CLASS_NAMES, config, "unused")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.png").write_bytes(png_bytes(8, 8))
    with pytest.raises(ValueError, match="holds 1 image: give at least 2"):
        image_sets(Int8Request(str(tmp_path / "one")), CLASS_NAMES, config, "unused")
