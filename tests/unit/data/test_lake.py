"""SQL over the lake: read-only over the sources' views unless the caller says it means more."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from loopml import Project
from loopml.errors import UsageError


@pytest.fixture
def project(make_project: Callable[..., Project], flights_csv: Callable[..., Path]) -> Project:
    p = make_project()
    p.data.ingest("flights", [flights_csv(stop=100)])
    return p


def test_views_and_introspection_are_allowed(project: Project) -> None:
    p = project
    assert p.data.query("SELECT count(*) AS n FROM flights").to_pylist() == [{"n": 100}]
    assert p.data.query("WITH f AS (SELECT * FROM flights) SELECT count(*) AS n FROM f")[
        "n"
    ].to_pylist() == [100]
    assert "carrier" in p.data.query("DESCRIBE flights")["column_name"].to_pylist()
    assert p.data.query("SHOW TABLES")["name"].to_pylist() == ["flights"]
    assert p.data.query("SUMMARIZE flights").num_rows > 0
    assert p.data.query("EXPLAIN SELECT * FROM flights").num_rows > 0
    # The lake's own files, read directly, are the same rows as the view.
    (batch,) = p.data.batches("flights")
    own = str(Path(p.lake_files.base) / (batch.lake_path or ""))
    assert p.data.query(f"SELECT count(*) AS n FROM read_parquet('{own}')")["n"][0].as_py() == 100


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM read_text('{outside}')", "outside the lake"),
        ("SELECT * FROM '{outside_csv}'", "outside the lake"),
        ("EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{lake_file}' (FORMAT csv)", "EXPLAIN"),
        ("SELECT * FROM read_csv('/etc/passwd')", "outside the lake"),
        ("SELECT * FROM glob('/*')", "outside the lake"),
        ("SELECT * FROM 'https://example.com/x.csv'", "outside the lake"),
        ("COPY (SELECT * FROM flights) TO '{written}'", "COPY"),
        ("COPY (SELECT 1 AS a) TO '{lake_file}' (FORMAT csv)", "COPY"),
        ("ATTACH '{written}' AS other", "ATTACH"),
        ("INSTALL httpfs", "read-only"),
        ("LOAD httpfs", "read-only"),
        ("SET enable_external_access = true", "SET"),
        ("CREATE TABLE t AS SELECT * FROM flights", "CREATE"),
        ("SELECT 1; COPY (SELECT 1) TO '{written}'", "COPY"),
        ("PRAGMA enable_profiling", "PRAGMA"),
    ],
)
def test_anything_beyond_reading_the_views_is_refused(
    project: Project, tmp_path: Path, sql: str, why: str
) -> None:
    p = project
    outside = tmp_path / "secret.txt"
    outside.write_text("secret\n")
    outside_csv = tmp_path / "secret.csv"
    outside_csv.write_text("a\n1\n")
    written = tmp_path / "written.csv"
    (batch,) = p.data.batches("flights")
    lake_file = Path(p.lake_files.base) / (batch.lake_path or "")
    before = lake_file.read_bytes()
    text = sql.format(
        outside=outside, outside_csv=outside_csv, written=written, lake_file=lake_file
    )
    with pytest.raises(UsageError, match=why) as caught:
        p.data.query(text)
    message = str(caught.value)
    assert "\n" not in message and "unsafe" in message, message
    assert not written.exists() and lake_file.read_bytes() == before
    assert pq.read_metadata(lake_file).num_rows == 100
    # The refusal leaves the lake as queryable as before.
    assert p.data.query("SELECT count(*) AS n FROM flights").to_pylist() == [{"n": 100}]


def test_unsafe_lifts_the_restriction(project: Project, tmp_path: Path) -> None:
    p = project
    outside = tmp_path / "other.csv"
    outside.write_text("a\n1\n2\n")
    got = p.data.query(f"SELECT count(*) AS n FROM '{outside}'", unsafe=True)
    assert got.to_pylist() == [{"n": 2}]
    written = tmp_path / "out.csv"
    p.data.query(f"COPY (SELECT carrier FROM flights) TO '{written}'", unsafe=True)
    assert len(written.read_text().splitlines()) == 101


def test_a_batch_whose_file_is_gone_is_named(project: Project) -> None:
    from loopml.errors import IntegrityError

    batch = project.data.batches("flights")[0]
    assert batch.lake_path is not None
    project.lake_files.delete(batch.lake_path)  # the lake changed outside loopml
    with pytest.raises(IntegrityError, match=f"batch {batch.id} of flights.*missing"):
        project.data.query("SELECT count(*) FROM flights")
