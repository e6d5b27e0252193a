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


# ------------------------------------------------------------------------ small and repeated

SMALL = """\
project: t
sources:
  s:
    format: csv
    timestamp: t
    schema:
      columns:
        v: {max: 10}
"""


def rows_of(day: int, n: int, values: dict[int, str] | None = None) -> str:
    lines = ["t,k,v"]
    for i in range(n):
        lines.append(
            f"2024-03-{day:02d}T{i // 60:02d}:{i % 60:02d}:00Z,k{i},{(values or {}).get(i, '1')}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def small(make_project: Callable[..., Project], tmp_path: Path) -> Project:
    """A source with four ordinary files of 200 rows: the batch checks have a history."""
    p = make_project(SMALL)
    for day in range(1, 5):
        path = tmp_path / f"d{day}.csv"
        path.write_text(rows_of(day, 200))
        (r,) = p.data.ingest("s", [path])
        assert r.status == "landed"
    return p


def reopen(p: Project, spec: str, make_project: Callable[..., Project]) -> Project:
    return make_project(spec, folder=p.root.name)


def test_release_of_five_fixed_rows_lands(
    small: Project, tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    path = tmp_path / "d5.csv"
    path.write_text(rows_of(5, 200, {i: "50" for i in range(5)}))
    (r,) = small.data.ingest("s", [path])
    assert (r.rows_accepted, r.rows_quarantined) == (195, 5)
    fixed = reopen(small, SMALL.replace("max: 10", "max: 100"), make_project)
    released = fixed.data.quarantine.release(r.quarantine_id, by="t")  # type: ignore[arg-type]
    # Five rows among 200-row files: no row-count check for rows already checked as a batch.
    assert (released.status, released.rows_accepted, released.rows_quarantined) == ("landed", 5, 0)
    assert fixed.data.quarantine.show(r.quarantine_id).entry.status == "released"  # type: ignore[arg-type]
    assert fixed.data.query("SELECT count(*) AS n FROM s").to_pylist() == [{"n": 1000}]


def test_a_release_held_again_keeps_its_entry_and_makes_no_new_one(
    small: Project, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.csv"
    path.write_text(rows_of(6, 3))
    (held,) = small.data.ingest("s", [path])
    assert held.status == "held" and held.batch_reasons[0]["code"] == "row_count"
    committed = [b.id for b in small.data.batches("s")]

    again = small.data.quarantine.release(held.quarantine_id, by="t")  # type: ignore[arg-type]
    assert again.status == "held" and again.rows_accepted == 0
    assert again.quarantine_id == held.quarantine_id  # the same entry, still held
    assert [b["code"] for b in again.batch_reasons] == ["row_count"]
    entries = small.data.quarantine.list(source="s", status=None)
    assert [(e.id, e.status) for e in entries] == [(held.quarantine_id, "held")]
    assert [b.id for b in small.data.batches("s")] == committed  # no batch for the attempt

    landed = small.data.quarantine.release(
        held.quarantine_id,  # type: ignore[arg-type]
        by="t",
        accept=["row_count"],
    )
    assert (landed.status, landed.rows_accepted) == ("landed", 3)
    entry = small.data.quarantine.show(held.quarantine_id).entry  # type: ignore[arg-type]
    assert entry.status == "released" and entry.resolution is not None
    assert entry.resolution["accepted"] == {"row_count": True}
    assert entry.resolution["batch"] == landed.batch_id


def test_a_release_held_again_for_another_check_can_accept_that_check(
    small: Project, tmp_path: Path
) -> None:
    # A small file whose producer added a column: held for the schema change first; once the
    # schema is accepted, its release is held for its row count, which the user may accept.
    path = tmp_path / "renamed.csv"
    path.write_text(
        rows_of(6, 3)
        .replace("t,k,v", "t,k,v,extra")
        .replace("Z,k", "Z,k")
        .replace(",1\n", ",1,x\n")
    )
    (held,) = small.data.ingest("s", [path])
    assert held.status == "held" and held.batch_reasons[0]["code"] == "schema_change"
    small.data.accept_schema("s", by="t")
    again = small.data.quarantine.release(held.quarantine_id, by="t")  # type: ignore[arg-type]
    assert again.status == "held" and [r["code"] for r in again.batch_reasons] == ["row_count"]
    entry = small.data.quarantine.show(held.quarantine_id).entry  # type: ignore[arg-type]
    # The entry is held for what holds it now; what held it before is kept, marked earlier.
    assert [r["code"] for r in entry.reasons if not r.get("also")] == ["row_count"]
    assert [r["code"] for r in entry.reasons if r.get("earlier")] == ["schema_change"]
    landed = small.data.quarantine.release(
        held.quarantine_id,  # type: ignore[arg-type]
        by="t",
        accept=["row_count"],
    )
    assert (landed.status, landed.rows_accepted) == ("landed", 3)


def test_a_release_that_lands_nothing_is_not_marked_released(
    small: Project, tmp_path: Path
) -> None:
    path = tmp_path / "d5.csv"
    path.write_text(rows_of(5, 200, {3: "50", 7: "oops"}))
    (r,) = small.data.ingest("s", [path])
    assert r.rows_quarantined == 2
    again = small.data.quarantine.release(r.quarantine_id, by="t")  # type: ignore[arg-type]
    assert (again.status, again.rows_read, again.rows_accepted, again.rows_quarantined) == (
        "held",
        2,
        0,
        2,
    )
    assert again.quarantine_id == r.quarantine_id and again.batch_id is None
    (entry,) = small.data.quarantine.list(source="s", status=None)
    assert (entry.id, entry.status, entry.resolution) == (r.quarantine_id, "held", None)
    rows = small.data.quarantine.show(entry.id).rows.to_pylist()  # type: ignore[union-attr]
    assert [(x["line"], x["reasons"][0]["code"]) for x in rows] == [
        (5, "out_of_range"),
        (9, "unparseable"),
    ]


def test_an_extra_field_row_keeps_its_reason_and_its_text(
    small: Project, tmp_path: Path, make_project: Callable[..., Project]
) -> None:
    text = rows_of(6, 3).splitlines()
    text[2] += ",surprise"
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(text) + "\n")
    (held,) = small.data.ingest("s", [path])  # held whole (3 rows among 200-row files)
    assert held.status == "held"
    entry = small.data.quarantine.show(held.quarantine_id).entry  # type: ignore[arg-type]
    also = [(x["code"], x["count"]) for x in entry.reasons if x.get("also")]
    assert also == [("field_count", 1)]  # found in the held file too, not only later

    again = small.data.quarantine.release(held.quarantine_id, by="t")  # type: ignore[arg-type]
    assert again.status == "held"
    out = tmp_path / "export.csv"
    assert small.data.quarantine.export(held.quarantine_id, out) == 3  # type: ignore[arg-type]
    assert text[2] in out.read_text().splitlines()  # the extra field is there, as it came

    landed = small.data.quarantine.release(
        held.quarantine_id,  # type: ignore[arg-type]
        by="t",
        accept=["row_count"],
    )
    assert (landed.rows_accepted, landed.rows_quarantined) == (2, 1)
    (row,) = small.data.quarantine.show(landed.quarantine_id).rows.to_pylist()  # type: ignore[arg-type, union-attr]
    assert [x["code"] for x in row["reasons"]] == ["field_count"]
    assert row["raw"] == text[2] and row["line"] == 3 and row["file"] == str(path)


def test_rows_of_a_source_with_newlines_in_values_release(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    spec = SMALL + "    csv: {newlines_in_values: true}\n"
    p = make_project(spec)
    (tmp_path / "a.csv").write_text(rows_of(1, 5))
    p.data.ingest("s", [tmp_path / "a.csv"])
    text = rows_of(2, 5, {1: "50"}).splitlines()
    text[3] += ",surprise"
    (tmp_path / "b.csv").write_text("\n".join(text) + "\n")
    (r,) = p.data.ingest("s", [tmp_path / "b.csv"])
    assert (r.rows_accepted, r.rows_quarantined) == (3, 2)
    q = make_project(spec.replace("max: 10", "max: 100"), folder=p.root.name)
    released = q.data.quarantine.release(r.quarantine_id, by="t")  # type: ignore[arg-type]
    assert (released.rows_accepted, released.rows_quarantined) == (1, 1), released.batch_reasons
    (row,) = q.data.quarantine.show(released.quarantine_id).rows.to_pylist()  # type: ignore[arg-type, union-attr]
    assert row["reasons"][0]["code"] == "field_count" and row["raw"] == text[3]


# ----------------------------------------------------------------------------------- drop


def test_drop_several_entries_or_a_filter_in_one_decision(small: Project, tmp_path: Path) -> None:
    ids = []
    for day in (6, 7, 8):
        path = tmp_path / f"tiny{day}.csv"
        path.write_text(rows_of(day, 2))
        (r,) = small.data.ingest("s", [path])
        ids.append(r.quarantine_id)
    path = tmp_path / "d9.csv"
    path.write_text(rows_of(9, 200, {0: "50"}))
    (rows_entry,) = small.data.ingest("s", [path])

    chosen = small.data.quarantine.select(source="s", code="row_count")
    assert [e.id for e in chosen] == ids
    with pytest.raises(NotFoundError, match="q_missing"):
        small.data.quarantine.drop_many([ids[0], "q_missing"], by="me", reason="x")
    assert all(e.status == "held" for e in small.data.quarantine.list(source="s"))  # all or none

    dropped = small.data.quarantine.drop_many(
        [e.id for e in chosen], by="me", reason="test files", selection="--code row_count"
    )
    assert [(d.id, d.status, d.rows) for d in dropped] == [(i, "dropped", 2) for i in ids]
    assert dropped[0].resolution == {"reason": "test files", "selection": "--code row_count"}
    (left,) = small.data.quarantine.list(source="s")
    assert left.id == rows_entry.quarantine_id


def test_an_entry_whose_rows_file_is_gone_says_so(small: Project, tmp_path: Path) -> None:
    path = tmp_path / "d5.csv"
    path.write_text(rows_of(5, 200, {0: "50"}))
    (r,) = small.data.ingest("s", [path])
    entry = small.data.quarantine.show(r.quarantine_id).entry  # type: ignore[arg-type]
    small.lake_files.delete(entry.path)  # the lake changed outside loopml
    from loopml.errors import IntegrityError

    with pytest.raises(IntegrityError, match=f"quarantine entry {entry.id}.*missing"):
        small.data.quarantine.show(entry.id)
