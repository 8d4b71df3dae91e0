"""A stored model never runs code: a config naming a callable backbone loads only when the caller
supplies that callable.

Every stored source (registry version, run folder, checkpoint, weights + config) refuses a
config whose BACKBONE names code, in one line naming the file and the value, and imports
nothing: the module named is written by the test, is importable, and leaves a marker when
imported. A model trained with a callable backbone still resolves, builds, runs ``infer`` and
``evaluate`` and exports when the user names the callable (``backbones=`` in Python,
``--backbone-module`` on the command line). An export folder keeps the name only, since its
graph holds the backbone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from mrcnn.config import Config, NamedBackbone
from mrcnn_pipeline.cli import main
from tasks import registry
from tasks.models import build, resolve
from tasks.models.runtimes import model_config
from tests.flows.test_training_flows import SHAPES, write_canonical
from tests.support.code_modules import (
    WrittenModule,
    backbone_module,
    imported_module,
    side_effect_module,
)
from tests.support.tiny_model import TINY_SETTINGS, png_bytes

REPO = Path(__file__).resolve().parents[2]
DAY = "2024-05-01"


@pytest.fixture
def side_effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WrittenModule]:
    """An importable module whose import leaves a marker; forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = side_effect_module(tmp_path)
    yield module
    sys.modules.pop(module.name, None)


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Callable]]:
    """A registry with ``custom`` v1, trained (random weights) on a callable backbone.

    Yields:
        ``(registry, reference of the callable, the callable)``.
    """
    from mrcnn.model import MaskRCNN

    folder = tmp_path_factory.mktemp("custom")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        module = backbone_module(folder)
        backbone = imported_module(module).backbone
        config = Config(**{**TINY_SETTINGS, "NUM_CLASSES": len(SHAPES) + 1, "BACKBONE": backbone})
        weights = folder / "model.weights.h5"
        MaskRCNN("inference", config, folder / "logs").save_weights(weights)
        stored = json.loads(config.to_json())
        assert stored["BACKBONE"] == module.reference()  # which callable, by name
        reg = str(folder / "registry")
        registry.register_version(reg, "custom", str(weights), stored, SHAPES, {}, {})
        yield reg, module.reference(), backbone
        sys.modules.pop(module.name, None)


def write_weights(path: Path) -> Path:
    """An HDF5 file: what every source checks a weights file is, before any config is used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h5py.File(path, "w").close()
    return path


def store(kind: str, root: Path, settings: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The config stored as ``kind`` of source; returns resolve's arguments and the config file."""
    classes = [f"class{i}" for i in range(1, settings["NUM_CLASSES"])]
    if kind == "registry":
        reg = str(root / "registry")
        weights = write_weights(root / "model.weights.h5")
        registry.register_version(reg, "stored", str(weights), settings, classes, {}, {})
        return (
            {"source": "stored@v1", "registry_uri": reg},
            str(root / "registry" / "stored" / "versions" / "1" / "config.json"),
        )
    run = root / "run"
    checkpoint = write_weights(run / "checkpoints" / "mask_rcnn_stored_0001.weights.h5")
    (run / "config.json").write_text(json.dumps(settings))
    (run / "classes.json").write_text(json.dumps(classes))
    arguments = {
        "run folder": {"source": str(run)},
        "checkpoint": {"source": str(checkpoint)},
        "weights + config": {"weights": str(checkpoint), "config": str(run / "config.json")},
    }[kind]
    return arguments, str(run / "config.json")


@pytest.mark.parametrize("kind", ["registry", "run folder", "checkpoint", "weights + config"])
def test_every_stored_source_refuses_a_config_naming_code(
    kind: str, tmp_path: Path, side_effects: WrittenModule
):
    settings = {**TINY_SETTINGS, "BACKBONE": side_effects.reference()}
    arguments, config_file = store(kind, tmp_path, settings)
    with pytest.raises(ValueError) as refused:
        resolve(**arguments)
    assert str(refused.value).startswith(
        f"model config {config_file!r}: BACKBONE {side_effects.reference()!r} is neither a "
        "built-in backbone"
    )
    assert "\n" not in str(refused.value)
    assert not side_effects.imported()


@pytest.mark.parametrize("reference", ["os:system", "subprocess:getoutput"])
def test_a_registered_config_naming_a_standard_function_is_refused(reference: str, tmp_path: Path):
    arguments, config_file = store("registry", tmp_path, {**TINY_SETTINGS, "BACKBONE": reference})
    with pytest.raises(ValueError, match=f"^model config '{config_file}': BACKBONE '{reference}'"):
        resolve(**arguments)


def test_a_built_in_backbone_still_loads_from_storage(tmp_path: Path):
    arguments, _ = store("registry", tmp_path, {**TINY_SETTINGS, "BACKBONE": "resnet18"})
    artifact = resolve(**arguments)
    assert artifact.backbone is None and model_config(artifact).BACKBONE == "resnet18"


def test_an_export_folder_keeps_a_callable_backbone_as_a_name(
    tmp_path: Path, side_effects: WrittenModule
):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "mrcnn_config.json").write_text(
        json.dumps({**TINY_SETTINGS, "BACKBONE": side_effects.reference()})
    )
    (folder / "classes.json").write_text(json.dumps(["car", "pothole"]))
    (folder / "saved_model.pb").write_bytes(b"")  # resolve reads metadata only
    artifact = resolve(str(folder))
    assert artifact.format == "saved_model" and artifact.backbone is None
    assert model_config(artifact).BACKBONE == NamedBackbone(side_effects.reference())
    assert not side_effects.imported()


def test_a_callable_backbone_loads_when_the_caller_supplies_it(custom: tuple[str, str, Callable]):
    reg, reference, backbone = custom
    with pytest.raises(ValueError, match=f"BACKBONE '{reference}' is neither a built-in"):
        resolve("custom@v1", reg)
    artifact = resolve("custom@v1", reg, backbones=[backbone])
    assert artifact.backbone is backbone and artifact.config["BACKBONE"] == reference
    loaded = build(artifact)
    assert loaded.config.BACKBONE is backbone
    image = rgb(64, 48)
    assert len(loaded.detect([image])) == 1


def rgb(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_flow_parameters_take_functions_never_names_to_import(side_effects: WrittenModule):
    """A deployment's parameters are JSON: a name in ``backbones`` is refused by Prefect."""
    from prefect.exceptions import ParameterTypeError

    from flows.batch_inference import batch_inference
    from flows.evaluate_model import evaluate_model

    for flow, required in (
        (batch_inference, {"input_uri": "in", "output_uri": "out"}),
        (evaluate_model, {"model": "roads@v1", "dataset": "data"}),
    ):
        with pytest.raises(ParameterTypeError, match="backbones.0: Input should be callable"):
            flow.validate_parameters({**required, "backbones": [side_effects.reference()]})
        allowed = flow.validate_parameters({**required, "backbones": [rgb]})
        assert allowed["backbones"] == [rgb]
    assert not side_effects.imported()


# ---------------------------------------------------------------------------- command line
@pytest.mark.usefixtures("prefect_harness")
def test_cli_infer_and_evaluate_load_the_model_with_the_named_callable(
    custom: tuple[str, str, Callable], tmp_path: Path, capsys: pytest.CaptureFixture
):
    reg, reference, _ = custom
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(png_bytes(40, 60))
    common = ["--model", "custom@v1", "--registry", reg, "--json"]
    infer = [
        "infer",
        *common,
        "--input",
        str(images),
        "--output",
        str(tmp_path / "out"),
        "--run-date",
        DAY,
        "--no-overlays",
        "--no-csv",
    ]
    assert main(infer) == 1  # without the callable: refused, nothing written
    assert f"BACKBONE '{reference}' is neither" in capsys.readouterr().err
    assert main([*infer, "--backbone-module", reference]) == 0
    assert json.loads(capsys.readouterr().out)["processed"] == 1
    dataset = write_canonical(tmp_path / "dataset")
    evaluate = [
        "evaluate",
        *common,
        "--dataset",
        dataset,
        "--output",
        str(tmp_path / "metrics"),
        "--backbone-module",
        reference,
    ]
    assert main(evaluate) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"]["identity"] == "custom@1" and metrics["images"] == 1


def test_cli_export_model_takes_the_named_callable(
    custom: tuple[str, str, Callable], tmp_path: Path, capsys: pytest.CaptureFixture
):
    reg, reference, _ = custom
    output = tmp_path / "export"
    argv = [
        "export-model",
        "--model",
        "custom@v1",
        "--registry",
        reg,
        "--format",
        "saved_model",
        "--output",
        str(output),
    ]
    assert main(argv) == 1
    assert f"BACKBONE '{reference}'" in capsys.readouterr().err and not output.exists()
    assert main([*argv, "--backbone-module", reference]) == 0
    stored = json.loads((output / "mrcnn_config.json").read_text())
    assert stored["BACKBONE"] == reference  # which callable the graph was built with
    artifact = resolve(str(output))  # runs without the callable: the graph holds it
    assert build(artifact).detect([rgb(40, 40)])[0]["masks"].shape[:2] == (40, 40)


def test_cli_names_a_backbone_module_that_does_not_exist(capsys: pytest.CaptureFixture):
    assert (
        main(
            [
                "export-model",
                "--model",
                "x@v1",
                "--format",
                "onnx",
                "--backbone-module",
                "no_such_module_here:backbone",
            ]
        )
        == 2
    )
    assert (
        "argument --backbone-module: no module 'no_such_module_here' to import "
        "'no_such_module_here:backbone' from"
    ) in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_harness")
def test_cli_refuses_a_registered_config_naming_code_in_one_line(
    tmp_path: Path, side_effects: WrittenModule
):
    """The real command in its own process, where the module named is importable too."""
    from prefect.settings import PREFECT_API_URL

    arguments, config_file = store(
        "registry", tmp_path, {**TINY_SETTINGS, "BACKBONE": side_effects.reference()}
    )
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(png_bytes(32, 32))
    path = os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mrcnn_pipeline.cli",
            "infer",
            "--model",
            "stored@v1",
            "--registry",
            arguments["registry_uri"],
            "--input",
            str(images),
            "--output",
            str(tmp_path / "out"),
            "--run-date",
            DAY,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    # Prefect's progress lines aside, the command's own output is one line.
    assert [line for line in done.stderr.splitlines() if line.startswith("mrcnn-pipeline")] == [
        f"mrcnn-pipeline infer: error: model config {config_file!r}: BACKBONE "
        f"{side_effects.reference()!r} is neither a built-in backbone (resnet18, resnet34, "
        "resnet50, resnet101) nor a callable the caller allowed; a stored config does not load "
        "code (docs/concepts/security.md)"
    ], done.stderr
    assert "Traceback" not in done.stderr
    assert not side_effects.marker.exists()  # not imported in the command's process either
    assert not (tmp_path / "out" / "area_ratios").exists()
