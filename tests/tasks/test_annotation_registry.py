"""The annotation format registry: the CLI, the source search and the reader call all come
from its records, and a format's options reach its reader and no other."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from mrcnn_pipeline.cli import build_parser, main
from tasks import convert
from tasks.annotations.labels import LabelMap
from tasks.annotations.registry import FORMATS, NAMES, all_options, formats_taking, get_format
from tests.support.builders import image_bytes, write


def convert_help() -> str:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return " ".join(subparsers.choices["convert"].format_help().split())


def test_names_are_unique_and_the_cli_offers_exactly_them():
    assert len(set(NAMES)) == len(NAMES) == len(FORMATS)
    (action,) = [a for a in build_parser()._actions if a.dest == "command"]
    (format_action,) = [a for a in action.choices["convert"]._actions if a.dest == "format"]
    assert tuple(format_action.choices) == NAMES


@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_cli_help_states_each_format_and_what_it_looks_for(fmt):
    assert f"{fmt.name}: {' '.join(fmt.help.split())} [{fmt.looks_for}]" in convert_help()


def test_cli_help_states_each_option_its_formats_and_default():
    text = convert_help()
    for option in all_options():
        assert option.flag in text
        assert f"(--format {', '.join(formats_taking(option))}" in text
        if option.default is not None:
            assert f"default: {option.default})" in text


@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_option_defaults_are_the_readers_own(fmt):
    parameters = inspect.signature(fmt.read).parameters
    for option in fmt.options:
        assert parameters[option.name].default == option.default


@pytest.mark.parametrize("fmt", FORMATS, ids=NAMES)
def test_empty_input_names_what_was_looked_for(tmp_path: Path, fmt):
    write(tmp_path / "notes.md", "nothing to convert")
    with pytest.raises(
        ValueError,
        match=f"no {fmt.name} source files "
        rf"\({re.escape(fmt.looks_for)}\)",
    ):
        convert.list_sources.fn(str(tmp_path), fmt.name)


def test_unknown_format_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown annotation format 'xml' \(one of labelme, "):
        get_format("xml")
    with pytest.raises(ValueError, match="unknown annotation format"):
        convert.is_source("xml", "a.xml")


def test_an_option_another_format_takes_is_refused():
    via = get_format("via")
    assert via.resolve_options({"attribute": "kind"}) == {
        "attribute": "kind",
        "default_label": None,
    }
    with pytest.raises(
        ValueError,
        match=r"format 'labelme' takes no option 'attribute' "
        r"\(its options: none\)",
    ):
        get_format("labelme").resolve_options({"attribute": "kind"})


def test_cli_refuses_an_option_of_another_format_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    write(tmp_path / "in/a.json", "{}")
    code = main(
        [
            "convert",
            "--format",
            "labelme",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--via-attribute",
            "kind",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "out").exists()
    assert err.strip() == (
        "mrcnn-pipeline convert: error: --via-attribute does not apply to "
        "--format labelme (only to --format via)"
    )


def test_a_format_option_reaches_its_reader(tmp_path: Path):
    regions = [
        {
            "shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 3, "height": 2},
            "region_attributes": {"kind": "car"},
        }
    ]
    write(tmp_path / "a.jpg", image_bytes(8, 8, fmt="JPEG"))
    write(tmp_path / "via.json", json.dumps({"a.jpg": {"filename": "a.jpg", "regions": regions}}))
    with_option = convert.convert_source.fn(
        str(tmp_path),
        "via.json",
        "via",
        LabelMap(),
        str(tmp_path / "staging"),
        {"attribute": "kind"},
    )
    assert [i["label"] for i in with_option["images"][0]["instances"]] == ["car"]
    default = convert.convert_source.fn(
        str(tmp_path), "via.json", "via", LabelMap(), str(tmp_path / "staging")
    )
    assert default["images"][0]["instances"] == []
    assert "region has no 'label' attribute" in default["issues"][0]["reason"]


def test_the_reference_page_describes_every_format_and_option():
    page = (Path(__file__).resolve().parents[2] / "docs/reference/annotation-formats.md").read_text(
        encoding="utf-8"
    )
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    for fmt in FORMATS:
        (row,) = [line for line in rows if line.startswith(f"| `{fmt.name}` |")]
        assert f"`{fmt.looks_for.replace('|', chr(92) + '|')}`" in row
        assert f"\n### {fmt.name}\n" in page
        for option in fmt.options:
            assert option.flag in row
            if option.default is not None:
                assert f"(default `{option.default}`)" in row
