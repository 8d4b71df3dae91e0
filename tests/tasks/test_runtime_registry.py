"""The export format and runtime registries: the model formats, the runtimes, an export
folder's format and the command line's choices and help all come from their records."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mrcnn.config import Config
from mrcnn.export import EXPORT_CONFIG
from mrcnn.export_registry import FORMATS, GRAPH_FILES, NAMES, format_of, get_format
from mrcnn_pipeline.cli import build_parser
from tasks.models import FORMATS as MODEL_FORMATS
from tasks.models import RUNTIMES, check_runtime, get_runtime, resolve
from tasks.models.runtime_registry import NAMES as RUNTIME_NAMES
from tasks.models.runtime_registry import chooses_precision, runtimes_running


def subcommand(name: str) -> argparse.ArgumentParser:
    (action,) = [a for a in build_parser()._actions if a.dest == "command"]
    return action.choices[name]


def option(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    (found,) = [a for a in parser._actions if a.dest == dest]
    return found


def help_text(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())


def export_folder(folder: Path, graph_file: str) -> str:
    """A folder ``resolve`` reads as an export: a valid config and an (empty) graph file."""
    folder.mkdir()
    config = Config(NAME="plain", NUM_CLASSES=2, IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64)
    (folder / EXPORT_CONFIG).write_text(json.dumps(config.to_dict()))
    (folder / graph_file).write_bytes(b"")
    return str(folder)


def test_names_and_graph_files_are_unique():
    assert len(set(NAMES)) == len(NAMES) == len(FORMATS)
    assert len(set(GRAPH_FILES)) == len(GRAPH_FILES)  # a folder's files name its format
    assert len(set(RUNTIME_NAMES)) == len(RUNTIME_NAMES) == len(RUNTIMES)


def test_every_model_format_has_exactly_one_runtime():
    assert MODEL_FORMATS == ("keras", *NAMES)
    for model_format in MODEL_FORMATS:
        assert len(runtimes_running(model_format)) == 1, model_format
    assert {fmt.runtime for fmt in FORMATS} <= set(RUNTIME_NAMES)


def test_each_runtime_runs_the_formats_whose_loader_runs_in_it():
    runs = {runtime.name: runtime.formats for runtime in RUNTIMES}
    assert runs == {
        "tensorflow": ("keras", "saved_model"),
        "onnxruntime": ("onnx",),
        "openvino": ("openvino",),
    }
    assert [r.name for r in RUNTIMES if r.isolate_shards] == ["openvino"]
    assert get_runtime("onnxruntime").help == "onnxruntime (ONNX exports)"
    assert get_runtime("tensorflow").help == "tensorflow (Keras weights, SavedModel exports)"


def test_precision_is_chosen_for_keras_weights_and_the_formats_that_choose_it():
    assert chooses_precision("keras")
    for fmt in FORMATS:
        assert chooses_precision(fmt.name) == fmt.chooses_precision
    assert [fmt.name for fmt in FORMATS if fmt.chooses_precision] == ["openvino"]


def test_unknown_names_name_the_registered_ones():
    with pytest.raises(
        ValueError,
        match=r"unknown export format 'tflite' \(one of saved_model, "
        r"onnx, openvino\)",
    ):
        get_format("tflite")
    with pytest.raises(
        ValueError,
        match=r"runtime must be one of tensorflow, onnxruntime, "
        r"openvino, got 'tflite'",
    ):
        get_runtime("tflite")


def test_the_cli_offers_exactly_the_registered_formats_and_runtimes():
    export_model = subcommand("export-model")
    assert tuple(option(export_model, "format").choices) == NAMES
    text = help_text(export_model)
    for fmt in FORMATS:
        assert f"{fmt.name}: {fmt.help}" in text and fmt.title in text
    for name in ("infer", "evaluate"):
        parser = subcommand(name)
        runtime = option(parser, "runtime")
        assert tuple(runtime.choices) == RUNTIME_NAMES and runtime.default == "tensorflow"
        text = help_text(parser)
        assert all(r.help in text for r in RUNTIMES), name


@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_an_export_folder_resolves_to_the_format_of_its_graph_file(tmp_path: Path, fmt):
    assert format_of({EXPORT_CONFIG, fmt.graph_file, "classes.json"}) == fmt
    artifact = resolve(export_folder(tmp_path / "export", fmt.graph_file))
    assert artifact.format == fmt.name
    check_runtime(artifact, fmt.runtime)
    other = next(name for name in RUNTIME_NAMES if name != fmt.runtime)
    with pytest.raises(
        ValueError, match=f"which runtime '{other}' does not run \\(use {fmt.runtime}, or export it"
    ):
        check_runtime(artifact, other)


def test_a_folder_without_a_graph_names_every_graph_file(tmp_path: Path):
    folder = export_folder(tmp_path / "export", "notes.txt")
    assert format_of({EXPORT_CONFIG, "notes.txt"}) is None
    with pytest.raises(
        FileNotFoundError,
        match=f"has {EXPORT_CONFIG} but no graph "
        rf"\({' or '.join(GRAPH_FILES)}\)",
    ):
        resolve(folder)


def test_a_fixed_precision_export_names_the_formats_that_choose(tmp_path: Path):
    artifact = resolve(export_folder(tmp_path / "export", get_format("onnx").graph_file))
    with pytest.raises(ValueError, match="run the Keras weights or an OpenVINO IR export"):
        check_runtime(artifact, "onnxruntime", "bfloat16")


def test_the_reference_page_describes_every_format_and_runtime():
    page = (Path(__file__).resolve().parents[2] / "docs/reference/export-formats.md").read_text(
        encoding="utf-8"
    )
    formats_part, runtimes_part = page.split("\n## Runtimes\n")
    rows = [line for line in formats_part.splitlines() if line.startswith("| `")]
    for fmt in FORMATS:
        (row,) = [line for line in rows if line.startswith(f"| `{fmt.name}` |")]
        precision = "chosen when loaded" if fmt.chooses_precision else "as exported"
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1].startswith(f"`{fmt.graph_file}`")
        extra = f"`{fmt.extra}`" if fmt.extra else "—"
        assert cells[2:] == [f"`{fmt.runtime}`", precision, extra]
    rows = [line for line in runtimes_part.splitlines() if line.startswith("| `")]
    for runtime in RUNTIMES:
        (row,) = [line for line in rows if line.startswith(f"| `{runtime.name}`")]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        runs = ["Keras weights"] if runtime.runs_keras else []
        assert cells[1:] == [
            ", ".join(runs + [f"`{name}`" for name in runtime.formats if name != "keras"]),
            "yes" if runtime.isolate_shards else "no",
        ]
