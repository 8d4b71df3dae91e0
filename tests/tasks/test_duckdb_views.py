"""``results --duckdb``: a DuckDB file of views over the Parquet tables, opened afresh and
queried, including the three questions docs/concepts/tables.md answers in SQL."""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mrcnn_pipeline.cli import main
from mrcnn_pipeline.duckdb_views import SUMMARY_VIEW, TABLES, write_views
from tasks.parquet_schemas import DRIFT, ErrorRow, ImageRow, rows_to_table
from tests.support.results_tables import NOW, Detected, Result, write_day

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("crack", "pothole")
TODAY = datetime.date.today()
DAYS = [(TODAY - datetime.timedelta(days=n)).isoformat() for n in (1, 0)]
OLD_DAY = (TODAY - datetime.timedelta(days=30)).isoformat()

# The three questions of docs/concepts/tables.md, verbatim (the test checks that they are there).
TREND_PER_SITE = """SELECT i.path_fields['site'] AS site, run_date, count(*) AS images,
       avg(a.area_ratio) AS mean_crack_ratio
FROM area_ratios a JOIN images i USING (image_uri, run_date)
WHERE a.class_name = 'crack'
GROUP BY ALL ORDER BY site, run_date;"""
DRIFTING_THIS_WEEK = """SELECT class_name, count(DISTINCT run_date) AS days_drifting,
       max(value) FILTER (WHERE statistic = 'psi') AS max_psi
FROM drift
WHERE drifting AND run_date > current_date - INTERVAL 7 DAY
GROUP BY class_name ORDER BY days_drifting DESC, max_psi DESC;"""
LARGEST_SHARE = """SELECT run_date, image_uri, round(100 * area_ratio, 1) AS pothole_pct,
       instance_count
FROM area_ratios WHERE class_name = 'pothole'
ORDER BY area_ratio DESC LIMIT 10;"""


def result(site: str, name: str, crack_rows: int, pothole_rows: int = 0) -> Result:
    """A 10x10 image with a crack of ``crack_rows`` rows and a pothole of ``pothole_rows``."""
    found = []
    for class_id, rows in ((1, crack_rows), (2, pothole_rows)):
        if rows:
            mask = np.zeros((10, 10), bool)
            mask[:rows] = True
            found.append(Detected(class_id, 0.9, mask))
    return Result(f"s3://b/in/site={site}/{name}.jpg", 10, 10, tuple(found))


def write_partition(out: Path, table: str, day: str, data: pa.Table) -> None:
    folder = out / table / f"run_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, folder / "part-0.parquet")


def write_images_table(out: Path, day: str, results: list[Result]) -> None:
    rows = [
        ImageRow(
            image_uri=r.uri,
            image_width=r.width,
            image_height=r.height,
            bytes=100,
            fingerprint="size=100",
            captured_at=NOW,
            path_fields={"site": r.uri.split("site=")[1].split("/")[0]},
            model_version="1",
            run_id=f"run-{day}",
        )
        for r in results
    ]
    write_partition(out, "images", day, rows_to_table(ImageRow, rows))


def write_drift(out: Path, day: str, drifting: dict[str, float]) -> None:
    rows = [
        {
            "class_name": name,
            "statistic": statistic,
            "value": psi if statistic == "psi" else 0.4,
            "threshold": 0.2,
            "drifting": psi >= 0.2,
            "window_days": 28,
            "today_images": 25,
            "window_images": 700,
        }
        for name, psi in drifting.items()
        for statistic in ("psi", "ks")
    ]
    write_partition(out, "drift", day, pa.Table.from_pylist(rows, schema=DRIFT))


@pytest.fixture
def output(tmp_path: Path) -> Path:
    """Two days at two sites, one failed image, the images table and a week of drift."""
    out = tmp_path / "out"
    days = {
        DAYS[0]: [result("north", "a", 2), result("south", "b", 6, pothole_rows=1)],
        DAYS[1]: [
            result("north", "a", 4),
            result("south", "b", 8, pothole_rows=5),
            result("south", "c", 0),
        ],
    }
    for day, results in days.items():
        write_day(out, day, results, CLASSES)
        write_images_table(out, day, results)
    write_partition(
        out,
        "errors",
        DAYS[1],
        rows_to_table(
            ErrorRow,
            [
                ErrorRow(
                    image_uri="s3://b/in/site=north/bad.jpg",
                    error_type="truncated",
                    message="cut",
                    run_id="r",
                    failed_at=NOW,
                )
            ],
        ),
    )
    write_drift(out, DAYS[0], {"crack": 0.1, "pothole": 0.3})
    write_drift(out, DAYS[1], {"crack": 0.25, "pothole": 0.5})
    write_drift(out, OLD_DAY, {"crack": 0.9, "pothole": 0.0})  # drifting, but weeks ago
    return out


def views_of(database: Path) -> set[str]:
    with duckdb.connect(str(database), read_only=True) as con:
        return {
            name
            for (name,) in con.sql(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }


def test_every_view_reads_the_parquet_and_answers_the_readme_questions(
    output: Path, tmp_path: Path
):
    database = tmp_path / "results.duckdb"
    written = write_views(str(output), str(database))
    assert set(written.views) == {*TABLES, SUMMARY_VIEW} and written.skipped == ()
    with duckdb.connect(str(database), read_only=True) as con:  # a fresh process would see this
        counts = {
            view: con.execute(f"SELECT count(*) FROM {view}").fetchall()[0][0]
            for view in (*TABLES, SUMMARY_VIEW)
        }
        assert counts == {
            "area_ratios": 10,
            "instances": 6,
            "errors": 1,
            "images": 5,
            "drift": 12,
            SUMMARY_VIEW: 4,
        }
        assert con.sql("SELECT DISTINCT typeof(run_date) FROM area_ratios").fetchall() == [
            ("DATE",)
        ]
        summary = con.sql(
            f"SELECT * FROM {SUMMARY_VIEW} WHERE class_name = 'crack' ORDER BY run_date"
        ).fetchall()
        assert [row[2:5] for row in summary] == [(2, 2, 2), (3, 2, 2)]
        assert summary[1][5:] == pytest.approx((0.4, 0.4, 0.72))  # mean, p50, p90 of .4 .8 0
        assert con.sql(TREND_PER_SITE).fetchall() == [
            ("north", datetime.date.fromisoformat(DAYS[0]), 1, pytest.approx(0.2)),
            ("north", datetime.date.fromisoformat(DAYS[1]), 1, pytest.approx(0.4)),
            ("south", datetime.date.fromisoformat(DAYS[0]), 1, pytest.approx(0.6)),
            ("south", datetime.date.fromisoformat(DAYS[1]), 2, pytest.approx(0.4)),
        ]
        assert con.sql(DRIFTING_THIS_WEEK).fetchall() == [("pothole", 2, 0.5), ("crack", 1, 0.25)]
        assert [row[1:3] for row in con.sql(LARGEST_SHARE).fetchall()[:2]] == [
            ("s3://b/in/site=south/b.jpg", 50.0),
            ("s3://b/in/site=south/b.jpg", 10.0),
        ]
    page = (REPO / "docs" / "concepts" / "tables.md").read_text()
    for query in (TREND_PER_SITE, DRIFTING_THIS_WEEK, LARGEST_SHARE):
        assert query in page


def test_views_follow_new_files_skip_missing_tables_and_a_rerun_replaces_them(tmp_path: Path):
    out, database = tmp_path / "out", tmp_path / "db" / "results.duckdb"
    write_day(out, DAYS[0], [result("north", "a", 2)], CLASSES)
    (out / "images" / f"run_date={DAYS[0]}").mkdir(parents=True)  # a folder, no files yet
    written = write_views(str(out), str(database))
    assert written.views == ("area_ratios", "instances", SUMMARY_VIEW)
    assert written.skipped == ("errors", "images", "drift")
    assert "skipped errors, images, drift: no Parquet files" in written.describe()
    assert views_of(database) == {"area_ratios", "instances", SUMMARY_VIEW}
    # Views, not copies: a day written afterwards is seen without writing the file again.
    write_day(out, DAYS[1], [result("north", "a", 4), result("south", "b", 1)], CLASSES)
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM area_ratios").fetchall()[0][0] == 6
    # Again, with a table that appeared in between: its view is added, the others replaced.
    write_drift(out, DAYS[1], {"crack": 0.3})
    for _ in range(2):
        assert write_views(str(out), str(database)).skipped == ("errors", "images")
    assert views_of(database) == {"area_ratios", "instances", "drift", SUMMARY_VIEW}
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE notes AS SELECT 1 AS x")  # the user's own objects stay
    (out / "drift" / f"run_date={DAYS[1]}" / "part-0.parquet").unlink()
    write_views(str(out), str(database))
    assert views_of(database) == {"area_ratios", "instances", SUMMARY_VIEW}
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.sql("SELECT x FROM notes").fetchall() == [(1,)]


def test_the_command_writes_the_file_and_refuses_s3(
    output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    database = tmp_path / "results.duckdb"
    assert main(["results", "--output", str(output), "--duckdb", str(database)]) == 0
    assert capsys.readouterr().out.startswith(f"{database}: views area_ratios, instances")
    assert views_of(database) == {*TABLES, SUMMARY_VIEW}
    assert (
        main(
            ["results", "--output", "s3://bucket/results", "--duckdb", str(tmp_path / "s3.duckdb")]
        )
        == 1
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--duckdb needs a local output" in error
    assert "copy the output locally" in error and not (tmp_path / "s3.duckdb").exists()
    assert (
        main(["results", "--output", str(output), "--duckdb", str(database), "--since", DAYS[0]])
        == 1
    )
    assert main(["results", "--output", str(tmp_path / "missing"), "--duckdb", str(database)]) == 1
    assert "does not exist" in capsys.readouterr().err
