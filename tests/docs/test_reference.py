"""The generated reference pages cover every command, option, setting and column."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from docsgen import reference
from mrcnn.config import DERIVED, Config
from tasks import parquet_schemas


def test_every_command_and_option_is_in_the_cli_reference():
    page = reference.cli_page()
    commands = reference.cli_commands()
    assert {" ".join(c.words) for c in commands} >= {
        "convert",
        "train",
        "evaluate",
        "register",
        "models promote",
        "dataset merge",
        "infer",
        "results",
        "compact",
        "serve",
        "review select",
        "export",
        "retrain",
        "report",
        "doctor",
    }
    for command in commands:
        assert f"\n## {command.name} {{#" in page, command.name
        section = page.split(f"\n## {command.name} {{#", 1)[1].split("\n## ", 1)[0]
        for action in command.parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in section, f"{command.name} {flag}"


def test_every_config_setting_has_a_default_and_a_meaning():
    settings = reference.config_settings()
    names = [s.name for s in settings]
    instance = Config(NAME="docs", NUM_CLASSES=2)
    assert sorted(names) == sorted(instance.to_dict()), (
        "the reference must list exactly Config's settings"
    )
    undescribed = [s.name for s in settings if not s.description]
    assert not undescribed, (
        f"Config settings without a description: {undescribed}; put a "
        "one-line string right below each in mrcnn/config.py"
    )
    assert {s.name for s in settings if s.derived} == set(DERIVED)
    page = reference.config_page()
    for setting in settings:
        assert f"| `{setting.name}` |" in page
    assert "| `DETECTION_MIN_CONFIDENCE` | `0.7` |" in page
    assert "| `MEAN_PIXEL` | `[123.7, 116.8, 103.9]` |" in page


def test_a_setting_without_a_description_is_found(tmp_path: Path):
    source = tmp_path / "config.py"
    source.write_text(
        textwrap.dedent('''
        class Config:
            NAME = None
            """Described."""
            GPU_COUNT = 1
            IMAGES_PER_GPU = 2
            """Described too."""
    ''')
    )
    tree = ast.parse(source.read_text())
    found = dict(reference._attribute_docstrings(tree.body[0]))
    assert found == {"NAME": "Described.", "GPU_COUNT": "", "IMAGES_PER_GPU": "Described too."}


@pytest.mark.parametrize("table", [*parquet_schemas.SCHEMAS, "drift"])
def test_every_column_has_a_meaning(table: str):
    schema = parquet_schemas.SCHEMAS.get(table, parquet_schemas.DRIFT)
    described = parquet_schemas.COLUMN_DESCRIPTIONS[table]
    assert list(described) == schema.names, "one meaning per column, in the schema's order"
    assert all(described.values()) and parquet_schemas.TABLE_DESCRIPTIONS[table]
    page = reference.schemas_page()
    section = page.split(f"## `{table}`", 1)[1].split("\n## ", 1)[0]
    for field in schema:
        assert f"| `{field.name}` | `{field.type}` |" in section
