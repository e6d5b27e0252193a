"""Quarantine: show, export, fix, release (exactly once), drop (recorded)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from loopml import Project
from loopml.errors import ConflictError, NotFoundError
from tests.conftest import flights_lines

HEAD = flights_lines()[0]
COLS = HEAD.split(",")


def edit(line: str, column: str, value: str) -> str:
    f = line.split(",")
    f[COLS.index(column)] = value
    return ",".join(f)


def batch(tmp_path: Path, name: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEAD, *rows]) + "\n")
    return path


@pytest.fixture
def project(make_project: Callable[..., Project], tmp_path: Path) -> Project:
    p = make_project()
    p.data.ingest("flights", [batch(tmp_path, "base.csv", list(flights_lines()[1:1001]))])
    return p


def test_release_after_a_spec_fix_lands_rows_once(
    project: Project, tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    rows = list(flights_lines()[2001:2101])
    rows[10] = edit(rows[10], "distance", "7000")  # above the declared maximum of 6000
    rows[20] = edit(rows[20], "dep_time", "oops")  # stays bad
    (r,) = project.data.ingest("flights", [batch(tmp_path, "b.csv", rows)])
    assert r.rows_quarantined == 2

    # The maximum was wrong: fix loopml.yaml, reopen, release.
    spec = (project.root / "loopml.yaml").read_text().replace("max: 6000", "max: 8000")
    fixed = make_project(spec, folder="project")
    released = fixed.data.quarantine.release(r.quarantine_id, by="tester")  # type: ignore[arg-type]
    assert (released.rows_read, released.rows_accepted, released.rows_quarantined) == (2, 1, 1)
    residual = fixed.data.quarantine.show(released.quarantine_id)  # type: ignore[arg-type]
    (still,) = residual.rows.to_pylist()  # type: ignore[union-attr]
    assert still["line"] == 22 and still["file"] == str(tmp_path / "b.csv")  # where it first was
    assert still["reasons"][0]["code"] == "unparseable"
    assert fixed.data.query(
        "SELECT count(*) AS n FROM flights WHERE distance = 7000"
    ).to_pylist() == [{"n": 1}]
    with pytest.raises(ConflictError, match="released"):
        fixed.data.quarantine.release(r.quarantine_id, by="tester")  # type: ignore[arg-type]
    old = fixed.data.quarantine.show(r.quarantine_id)  # type: ignore[arg-type]
    assert old.entry.status == "released" and old.entry.resolved_by == "tester"


def test_export_fix_and_release(project: Project, tmp_path: Path) -> None:
    rows = list(flights_lines()[3001:3051])
    rows[3] = edit(rows[3], "carrier", "NA")
    rows[4] = ",".join(rows[4].split(",")[:5])
    (r,) = project.data.ingest("flights", [batch(tmp_path, "c.csv", rows)])
    out = tmp_path / "fix.csv"
    assert project.data.quarantine.export(r.quarantine_id, out) == 2  # type: ignore[arg-type]
    text = out.read_text().splitlines()
    assert text[0] == HEAD and text[1:] == [rows[3], rows[4]]
    out.write_text("\n".join([HEAD, flights_lines()[3001 + 3], flights_lines()[3001 + 4]]) + "\n")
    released = project.data.quarantine.release(r.quarantine_id, by="t", fixed=out)  # type: ignore[arg-type]
    assert (released.rows_accepted, released.rows_quarantined) == (2, 0)
    total = project.data.query("SELECT count(*) AS n FROM flights").to_pylist()[0]["n"]
    assert total == 1000 + 50


def test_drop_is_recorded_and_final(project: Project, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "\n".join([HEAD + ",gate", *(r + ",B1" for r in flights_lines()[4001:4011])]) + "\n"
    )
    (h1,) = project.data.ingest("flights", [path])
    assert h1.status == "held"
    dropped = project.data.quarantine.drop(h1.quarantine_id, by="me", reason="sent by mistake")  # type: ignore[arg-type]
    assert dropped.status == "dropped" and dropped.resolution == {"reason": "sent by mistake"}
    with pytest.raises(ConflictError):
        project.data.quarantine.drop(h1.quarantine_id, by="me", reason="again")  # type: ignore[arg-type]
    with pytest.raises(ConflictError, match="reason"):
        project.data.quarantine.drop("q_x", by="me", reason=" ")
    with pytest.raises(NotFoundError):
        project.data.quarantine.show("q_missing")


def test_json_lines_and_parquet_rows_release(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = make_project(
        "project: t\nsources:\n  s:\n    format: parquet\n"
        "    schema:\n      columns:\n        v: {max: 10}\n"
    )
    pq.write_table(pa.table({"k": [1, 2, 3], "v": [1.0, 2.0, 3.0]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"k": [4, 5], "v": [50.0, 5.0]}), tmp_path / "b.parquet")
    p.data.ingest("s", [tmp_path / "a.parquet"])
    (r,) = p.data.ingest("s", [tmp_path / "b.parquet"])
    view = p.data.quarantine.show(r.quarantine_id)  # type: ignore[arg-type]
    (row,) = view.rows.to_pylist()  # type: ignore[union-attr]
    assert row["row"] == 1 and row["line"] is None and '"v":50.0' in row["raw"]
    spec = (p.root / "loopml.yaml").read_text().replace("max: 10", "max: 100")
    q = make_project(spec)
    released = q.data.quarantine.release(r.quarantine_id, by="t")  # type: ignore[arg-type]
    assert released.rows_accepted == 1
    assert q.data.query("SELECT k FROM s ORDER BY k").column("k").to_pylist() == [1, 2, 3, 4, 5]
