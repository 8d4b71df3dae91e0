"""What ``mrcnn-pipeline`` prints when a run fails: a user error is one line and exit code 1; a
programming error keeps its traceback and says where to report it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrcnn_pipeline.cli import BUG_REPORT, main
from tasks.annotations import canonical
from tasks.failures import InvalidInput
from tests.support.builders import write_labelme_folder

pytestmark = pytest.mark.usefixtures("prefect_harness")


def convert(tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    write_labelme_folder(tmp_path / "in")
    code = main(
        [
            "convert",
            "--format",
            "labelme",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    return code, capsys.readouterr().err


def test_a_bug_inside_a_task_shows_its_traceback_and_where_to_report_it(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    def summarize(*args: object, **kwargs: object) -> None:
        return {"kept": 1}["dropped"]  # a programming error: a key that is not there

    monkeypatch.setattr(canonical, "summarize", summarize)  # what the convert-source task calls
    code, err = convert(tmp_path, capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err and "KeyError: 'dropped'" in err
    assert "in summarize" in err  # the frame of the bug
    assert err.rstrip().endswith(BUG_REPORT)
    assert "error: 'dropped'" not in err


def test_a_user_error_inside_a_task_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    def summarize(relative: str, *args: object, **kwargs: object) -> None:
        raise InvalidInput(f"{relative}: not an annotation file")

    monkeypatch.setattr(canonical, "summarize", summarize)
    code, err = convert(tmp_path, capsys)
    assert code == 1
    assert err.startswith("mrcnn-pipeline convert: error: ") and err.count("\n") == 1
    assert err.endswith(": not an annotation file\n") and "Traceback" not in err
