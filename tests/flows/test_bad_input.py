"""Bad input leaves nothing behind: each command checks the model, weights, config and input
first and probes its output last, so a one-line error creates no output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.logging.configuration import ensure_logging_setup

from mrcnn_pipeline.cli import main
from tests.support.builders import image_bytes, write, write_labelme_folder
from tests.support.tiny_model import tiny_model_dir

# Prefect's console log handler keeps the stderr it finds when its logging is set up: set it
# up at collection, not under a test's capsys, whose stream is closed when the test ends.
ensure_logging_setup()

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def tiny() -> Path:
    return tiny_model_dir()


@pytest.fixture
def inputs(tmp_path: Path, tiny: Path) -> dict[str, str]:
    """An image folder, the tiny model, a JPEG, a malformed config and an empty registry."""
    write(tmp_path / "images" / "a.png", image_bytes(30, 40, seed=1))
    write(tmp_path / "photo.jpg", image_bytes(8, 8, fmt="JPEG"))
    write(tmp_path / "config.json", '{"NAME": "tiny", ')
    return {
        "tmp": str(tmp_path),
        "images": str(tmp_path / "images"),
        "weights": str(tiny / "model.weights.h5"),
        "config": str(tiny / "config.json"),
        "photo": str(tmp_path / "photo.jpg"),
        "bad_config": str(tmp_path / "config.json"),
        "registry": str(tmp_path / "registry"),
    }


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


INFER_CASES = {
    "missing input folder": (
        ["--input", "{tmp}/nowhere", "--weights", "{weights}", "--config", "{config}"],
        "input folder '{tmp}/nowhere' not found",
    ),
    "JPEG as weights": (
        ["--input", "{images}", "--weights", "{photo}", "--config", "{config}"],
        "weight file '{photo}' is not an HDF5 file",
    ),
    "malformed config": (
        ["--input", "{images}", "--weights", "{weights}", "--config", "{bad_config}"],
        "model config '{bad_config}' is not valid JSON",
    ),
    "unknown reference": (
        ["--input", "{images}", "--model", "ghost@production", "--registry", "{registry}"],
        "model 'ghost' not found in registry '{registry}'",
    ),
}


@pytest.mark.parametrize("case", INFER_CASES)
def test_infer_with_bad_input_creates_no_output_folder(
    case: str, inputs: dict[str, str], capsys: pytest.CaptureFixture
):
    arguments, message = INFER_CASES[case]
    output = Path(inputs["tmp"], "results")
    argv = ["infer", "--output", str(output), *(a.format(**inputs) for a in arguments)]
    assert f"error: {message.format(**inputs)}" in one_line_error(argv, capsys)
    assert not output.exists()


def test_a_strict_convert_that_fails_leaves_no_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    write_labelme_folder(tmp_path / "labelme")  # with an embedded image: staged, then removed
    output = tmp_path / "dataset"
    err = one_line_error(
        [
            "convert",
            "--format",
            "labelme",
            "--input",
            str(tmp_path / "labelme"),
            "--output",
            str(output),
            "--strict",
        ],
        capsys,
    )
    assert "duplicate image name" in err and not output.exists()


def test_convert_probes_its_output_before_converting(tmp_path: Path, capsys: pytest.CaptureFixture):
    write_labelme_folder(tmp_path / "labelme")
    (tmp_path / "taken").write_text("a file where the dataset folder should go")
    err = one_line_error(
        [
            "convert",
            "--format",
            "labelme",
            "--input",
            str(tmp_path / "labelme"),
            "--output",
            str(tmp_path / "taken" / "dataset"),
        ],
        capsys,
    )
    assert f"output folder '{tmp_path / 'taken' / 'dataset'}' is not writable" in err


def test_export_model_probes_its_output_before_building_the_model(
    inputs: dict[str, str], capsys: pytest.CaptureFixture
):
    taken = Path(inputs["tmp"], "taken")
    taken.write_text("a file where the export folder should go")
    err = one_line_error(
        [
            "export-model",
            "--model",
            inputs["weights"],
            "--format",
            "saved_model",
            "--output",
            str(taken / "export"),
        ],
        capsys,
    )
    assert f"output folder '{taken / 'export'}' is not writable: Not a directory" in err
