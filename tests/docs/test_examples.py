"""Every code block the documentation marks runnable runs, on tiny data made here.

The blocks of a page run in order in one folder that holds the inputs the page's markers
name (`docsgen.examples`): `mrcnn-pipeline` commands through the CLI's own `main` against the
session's Prefect API, other shell lines in bash, Python blocks as scripts in that folder,
SQL blocks in DuckDB, YAML blocks as training configs.
"""

from __future__ import annotations

import atexit
import functools
import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from docsgen.examples import Example, all_examples, shell_commands
from tests.support.tiny_model import TINY_SETTINGS, tiny_model_dir

EXAMPLES = all_examples()
RUN_DATE = "2024-05-01"


# ---------------------------------------------------------------------------- inputs
def write_labelme(folder: Path) -> None:
    """`labelme/`: six annotated 128² shapes images and `labels.txt`."""
    from mrcnn_pipeline.demo import write_labelme_folder

    write_labelme_folder(folder / "labelme", 6)


def write_images(folder: Path) -> None:
    """`images/`: four unannotated JPEGs and an empty file, which becomes an `errors` row."""
    from mrcnn_pipeline.demo import write_incoming

    write_incoming(folder / "images", 4)
    (folder / "images" / "empty.jpg").write_bytes(b"")


def write_run(folder: Path) -> None:
    """`run/`: a weights file and the `config.json` beside it, as a training run leaves them."""
    run = folder / "run"
    run.mkdir()
    tiny = tiny_model_dir()
    shutil.copy(tiny / "model.weights.h5", run / "mask_rcnn_roads_0150.weights.h5")
    config = {**json.loads((tiny / "config.json").read_text()), "NAME": "roads"}
    (run / "config.json").write_text(json.dumps(config))
    shutil.copy(tiny / "classes.json", run / "classes.json")


def write_registry(folder: Path) -> None:
    """`registry/`: `roads@v1` (classes car, pothole) and `shapes@v1` (square, circle,
    triangle) at `production`, both with random weights."""
    from tasks.registry import versions

    for name, model in (("roads", tiny_model_dir()), ("shapes", shapes_model_dir())):
        config = {**json.loads((model / "config.json").read_text()), "NAME": name}
        version = versions.register_version(
            str(folder / "registry"),
            name,
            str(model / "model.weights.h5"),
            config,
            json.loads((model / "classes.json").read_text()),
            {},
            {"source": "docs test"},
        )
        versions.set_alias(version, "production", reason="documentation test")


@functools.cache
def shapes_model_dir() -> Path:
    """A tiny random-weight model of the demo's three shapes classes (built once)."""
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN
    from mrcnn_pipeline.demo import CLASSES

    folder = Path(tempfile.mkdtemp(prefix="docs-shapes-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config = Config(**{**TINY_SETTINGS, "NAME": "shapes", "NUM_CLASSES": 1 + len(CLASSES)})
    MaskRCNN("inference", config, folder / "logs").save_weights(folder / "model.weights.h5")
    (folder / "config.json").write_text(config.to_json())
    (folder / "classes.json").write_text(json.dumps(list(CLASSES)))
    return folder


def write_results(folder: Path) -> None:
    """`results/`: one night of batch inference by `roads@production` over `images/`."""
    make("images", folder)
    make("registry", folder)
    run_cli(
        [
            "infer",
            "--model",
            "roads@production",
            "--registry",
            "registry",
            "--input",
            "images",
            "--output",
            "results",
            "--run-date",
            RUN_DATE,
        ]
    )


def write_dataset(folder: Path) -> None:
    """`dataset/`: the canonical dataset converted from `labelme/`."""
    make("labelme", folder)
    run_cli(
        [
            "convert",
            "--format",
            "labelme",
            "--input",
            "labelme",
            "--output",
            "dataset",
            "--labels",
            "labelme/labels.txt",
        ]
    )


INPUTS: dict[str, Callable[[Path], None]] = {
    "labelme": write_labelme,
    "images": write_images,
    "run": write_run,
    "registry": write_registry,
    "results": write_results,
    "dataset": write_dataset,
}


def make(name: str, folder: Path) -> None:
    """The input `name` (a folder of the same name) in `folder`, unless a block wrote it."""
    if not (folder / name).exists():
        INPUTS[name](folder)


# ---------------------------------------------------------------------------- running
def run_cli(argv: list[str]) -> None:
    from mrcnn_pipeline.cli import main

    code = main(argv)
    assert code == 0, f"mrcnn-pipeline {shlex.join(argv)} exited {code}"


def run_example(example: Example) -> None:
    if example.language == "python":
        exec(compile(example.code, example.where, "exec"), {"__name__": "__docs__"})
    elif example.language == "yaml":
        import yaml

        from tasks.training.config import load_training_config

        load_training_config(yaml.safe_load(example.code))
    elif example.language == "sql":
        import duckdb

        connection = duckdb.connect()
        for statement in filter(str.strip, example.code.split(";")):
            connection.execute(statement).fetchall()
    else:
        for command in shell_commands(example.code):
            words = shlex.split(command, comments=True)
            if words[0] == "mrcnn-pipeline":
                run_cli(words[1:])
            else:
                subprocess.run(["bash", "-c", command], check=True, timeout=120)


def test_markers_name_known_inputs():
    for examples in EXAMPLES.values():
        for example in examples:
            unknown = set(example.needs) - set(INPUTS)
            assert not unknown, f"{example.where}: unknown inputs {unknown}; known: {list(INPUTS)}"


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("page", sorted(EXAMPLES))
def test_the_runnable_blocks_of_a_page_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    for example in EXAMPLES[page]:
        for need in example.needs:  # made when the first block naming it comes, if still absent
            make(need, tmp_path)
        try:
            run_example(example)
        except Exception as error:
            raise AssertionError(f"{example.where} failed: {error}") from error
