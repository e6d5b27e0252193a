"""Batch checks (row count, null rate) and the timestamp floor: defaults that suit data which is
not flights, thresholds chosen from the data and printed, and a way to accept a new normal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from loopml import Project
from tests.bundesliga import raw_csv

SPEC = """\
project: t
sources:
  s:
    format: csv
    timestamp: t
    schema:
      columns:
        v: {nullable: true}
{checks}
"""


def csv_rows(day: int, n: int, *, v: str | None = "1", start: int = 0) -> str:
    """``n`` rows of one day: a timestamp, a key, a value (``v``; None writes an empty field)."""
    lines = ["t,k,v"]
    for i in range(start, start + n):
        lines.append(f"2024-03-{day:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z,k{i},{v or ''}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def project(make_project: Callable[..., Project]) -> Callable[..., Project]:
    def make(checks: str = "") -> Project:
        return make_project(SPEC.replace("{checks}", f"    checks: {checks}" if checks else ""))

    return make


def ingest(p: Project, tmp_path: Path, name: str, text: str) -> object:
    path = tmp_path / name
    path.write_text(text)
    (r,) = p.data.ingest("s", [path])
    return r


# ------------------------------------------------------------------------------- row count


def test_row_count_default_follows_the_observed_spread_and_says_so(
    project: Callable[..., Project], tmp_path: Path
) -> None:
    p = project()
    # Seasonal volumes: a quiet month among busy ones is normal for this source.
    for day, n in enumerate([400, 450, 30, 380, 420], start=1):
        r = ingest(p, tmp_path, f"m{day}.csv", csv_rows(day, n))
        assert r.status == "landed", r.batch_reasons  # type: ignore[attr-defined]
    quiet = ingest(p, tmp_path, "quiet.csv", csv_rows(10, 12))
    # The old default (10x the median of 400) held these 12 rows; 30 rows were seen already.
    assert quiet.status == "landed", quiet.batch_reasons  # type: ignore[attr-defined]
    (note,) = [c for c in quiet.checks if c.check == "row_count"]  # type: ignore[attr-defined]
    assert note.applied and note.history == 5 and (note.low, note.high) == (3.0, 4500.0)
    assert "30 to 450 rows" in note.text and "auto" in note.text

    truncated = ingest(p, tmp_path, "truncated.csv", csv_rows(11, 1))
    assert truncated.status == "held"  # type: ignore[attr-defined]
    (reason,) = truncated.batch_reasons  # type: ignore[attr-defined]
    assert reason["code"] == "row_count"
    assert "1 rows" in reason["message"] and "12 to 450" in reason["message"]
    assert "--accept-row-count" in reason["message"]  # how to land it as it is


def test_a_row_count_ratio_given_in_the_spec_compares_with_the_median(
    project: Callable[..., Project], tmp_path: Path
) -> None:
    p = project("{row_count_ratio: 2}")
    for day in range(1, 5):
        assert ingest(p, tmp_path, f"d{day}.csv", csv_rows(day, 100)).status == "landed"  # type: ignore[attr-defined]
    r = ingest(p, tmp_path, "big.csv", csv_rows(9, 300))
    assert r.status == "held"  # type: ignore[attr-defined]
    assert "median of 100" in r.batch_reasons[0]["message"]  # type: ignore[attr-defined]
    assert "checks.row_count_ratio allows 2x" in r.batch_reasons[0]["message"]  # type: ignore[attr-defined]


def test_stream_and_release_batches_are_not_the_history_of_files(
    project: Callable[..., Project], tmp_path: Path
) -> None:
    """Only delivered files make the row-count history: many small releases do not drag the
    median down until an ordinary file looks too big."""
    p = project("{row_count_ratio: 10}")
    for day in range(1, 4):
        ingest(p, tmp_path, f"d{day}.csv", csv_rows(day, 100))
    spec = (p.root / "loopml.yaml").read_text()
    (p.root / "loopml.yaml").write_text(
        spec.replace("{nullable: true}", "{nullable: true, max: 5}")
    )
    q = Project.open(p.root)
    try:
        for day in range(4, 8):
            text = csv_rows(day, 100)
            lines = text.splitlines()
            lines[1] = lines[1].rsplit(",", 1)[0] + ",9"  # one row above the maximum
            r = ingest(q, tmp_path, f"d{day}.csv", "\n".join(lines) + "\n")
            assert (r.rows_accepted, r.rows_quarantined) == (99, 1)  # type: ignore[attr-defined]
    finally:
        q.close()
    (p.root / "loopml.yaml").write_text(spec)
    fixed = Project.open(p.root)
    try:
        for entry in fixed.data.quarantine.list(source="s"):
            released = fixed.data.quarantine.release(entry.id, by="t")
            assert released.rows_accepted == 1  # a release of one row is not held
        r = ingest(fixed, tmp_path, "d9.csv", csv_rows(9, 100))
        assert r.status == "landed", r.batch_reasons  # type: ignore[attr-defined]
        (note,) = [c for c in r.checks if c.check == "row_count"]  # type: ignore[attr-defined]
        assert note.history == 7  # the seven files, not the four one-row releases
    finally:
        fixed.close()


# ------------------------------------------------------------------------------- null rate


def test_a_few_nulls_in_a_small_file_are_not_a_null_rate_rise(
    project: Callable[..., Project], tmp_path: Path
) -> None:
    p = project()
    for day in range(1, 5):
        ingest(p, tmp_path, f"d{day}.csv", csv_rows(day, 100))
    lines = csv_rows(9, 12).splitlines()
    for i in (2, 5, 8, 11):  # 4 nulls in 12 rows: a third, but 12 rows prove little
        lines[i] = lines[i].rsplit(",", 1)[0] + ","
    r = ingest(p, tmp_path, "small.csv", "\n".join(lines) + "\n")
    assert r.status == "landed", r.batch_reasons  # type: ignore[attr-defined]


def test_unparseable_values_are_row_reasons_not_a_null_rate_rise(
    project: Callable[..., Project], tmp_path: Path
) -> None:
    p = project()
    for day in range(1, 5):
        ingest(p, tmp_path, f"d{day}.csv", csv_rows(day, 100))
    r = ingest(p, tmp_path, "words.csv", csv_rows(9, 100, v="lots"))  # every value is a word
    assert r.status == "partial" and r.rows_quarantined == 100, r.batch_reasons  # type: ignore[attr-defined]
    assert [x["code"] for x in r.reasons] == ["unparseable"]  # type: ignore[attr-defined]


def test_a_column_that_stops_being_reported_can_be_accepted_as_the_new_normal(
    project: Callable[..., Project], tmp_path: Path
) -> None:
    p = project()
    for day in range(1, 5):
        ingest(p, tmp_path, f"d{day}.csv", csv_rows(day, 100))
    gap = ingest(p, tmp_path, "gap.csv", csv_rows(9, 100, v=None))
    assert gap.status == "held"  # type: ignore[attr-defined]
    (reason,) = gap.batch_reasons  # type: ignore[attr-defined]
    assert (reason["code"], reason["column"]) == ("null_rate", "v")
    assert "--accept-null-rate" in reason["message"]

    released = p.data.quarantine.release(
        gap.quarantine_id,  # type: ignore[attr-defined]
        by="analyst",
        accept=["null_rate"],
    )
    assert (released.status, released.rows_accepted) == ("landed", 100)
    entry = p.data.quarantine.show(gap.quarantine_id).entry  # type: ignore[attr-defined]
    assert entry.status == "released" and entry.resolution is not None
    assert entry.resolution["accepted"] == {"null_rate": ["v"]}

    # The next files without the column land: the accepted rate is the column's new baseline.
    for day in (10, 11):
        r = ingest(p, tmp_path, f"after{day}.csv", csv_rows(day, 100, v=None))
        assert r.status == "landed", r.batch_reasons  # type: ignore[attr-defined]


def test_accepting_a_check_needs_a_batch_held_for_it(
    project: Callable[..., Project], tmp_path: Path
) -> None:
    from loopml.errors import UsageError

    p = project()
    for day in range(1, 5):
        ingest(p, tmp_path, f"d{day}.csv", csv_rows(day, 100))
    gap = ingest(p, tmp_path, "gap.csv", csv_rows(9, 100, v=None))
    with pytest.raises(UsageError, match="row_count"):
        p.data.quarantine.release(gap.quarantine_id, by="t", accept=["row_count"])  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="nonsense"):
        p.data.quarantine.release(gap.quarantine_id, by="t", accept=["nonsense"])  # type: ignore[attr-defined]
    assert p.data.quarantine.show(gap.quarantine_id).entry.status == "held"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- time floor


def test_historical_matches_before_1970_land_by_default(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    lines = raw_csv().decode().splitlines()
    head, body = lines[0], lines[1:]
    year = head.split(",").index('"Year"')
    p = make_project("project: bl\nsources:\n  matches: {format: csv, timestamp: Date}\n")
    seasons = sorted({int(r.split(",")[year]) for r in body})[:12]  # 1963 to 1974, a file each
    results = []
    for season in seasons:
        path = tmp_path / f"{season}.csv"
        path.write_text("\n".join([head, *(r for r in body if int(r.split(",")[year]) == season)]))
        results.extend(p.data.ingest("matches", [path]))
    assert all(r.status in ("landed", "partial") for r in results), [
        r.batch_reasons for r in results
    ]
    reasons = {x["code"] for r in results for x in r.reasons}
    assert "timestamp_too_old" not in reasons
    before_1970 = p.data.query(
        "SELECT count(*) AS n FROM matches WHERE \"Date\" < TIMESTAMP '1970-01-01'"
    ).to_pylist()[0]["n"]
    expected = sum(
        1 for r in body if int(r.split(",")[year]) in seasons and r.split(",")[-1][:4] < "1970"
    )
    assert before_1970 == expected > 1500
    floor = [c for c in results[-1].checks if c.check == "timestamp_floor"]
    assert floor and not floor[0].applied and "checks.not_before" in floor[0].text


def test_a_timestamp_floor_is_opt_in(project: Callable[..., Project], tmp_path: Path) -> None:
    p = project("{not_before: 2024-03-05}")
    r = ingest(p, tmp_path, "a.csv", csv_rows(4, 3) + csv_rows(6, 2).split("\n", 1)[1])
    assert (r.rows_accepted, r.rows_quarantined) == (2, 3)  # type: ignore[attr-defined]
    assert r.reasons[0]["code"] == "timestamp_too_old"  # type: ignore[attr-defined]


def wide_csv(path: Path, columns: int, rows: int, start: int) -> Path:
    """A file of ``columns`` numeric columns (and a text one), ``rows`` rows from ``start``."""
    lines = [",".join(["name"] + [f"c{j}" for j in range(columns - 1)])]
    for i in range(start, start + rows):
        lines.append(",".join([f"r{i}"] + [str(i + j) for j in range(columns - 1)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_checks_of_a_10000_column_file_take_linear_time(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    """Issue 17.6: a list scan of the column names per column made 10,000 columns take minutes
    (102 s to infer, 265 s to check the second file); linear, both take a few seconds."""
    import time

    p = make_project("project: t\n")
    first = wide_csv(tmp_path / "a.csv", 10_000, 30, 0)
    second = wide_csv(tmp_path / "b.csv", 10_000, 30, 1_000)
    started = time.perf_counter()
    (a,) = p.data.ingest("wide", [first])
    inferred = time.perf_counter() - started
    started = time.perf_counter()
    (b,) = p.data.ingest("wide", [second])
    checked = time.perf_counter() - started
    assert (a.status, b.status, b.rows_accepted) == ("landed", "landed", 30)
    assert len(p.data.schema("wide").schema.columns) == 10_000
    # Linear: about 3 s each on a shared 2-core machine; the quadratic code took 100 s and more.
    assert inferred < 30 and checked < 30, (inferred, checked)
