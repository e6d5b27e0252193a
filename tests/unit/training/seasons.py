"""A small history with seasons: matches on the weekends from mid-August to late May, none in
the summer, a binary label (the home side wins) with a known signal. For tests of the gate and
refits on data that is not a steady stream."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from loopml import Project

SPEC = """\
project: seasons
sources:
  matches: {format: csv, timestamp: t, primary_key: [id]}
features:
  event: {source: matches}
  request: [id, t, home, x1, x2]
  label: {name: win, expr: "flag"}
  vector: [home, x1, x2]
model:
  name: m
  task: binary
  params: {n_estimators: 40, num_leaves: 15, min_child_samples: 10}
  split: {method: time, test: 0.2, valid: 0.1}
gate: GATE
"""

PARAMS = "  params: {n_estimators: 40, num_leaves: 15, min_child_samples: 10}\n"
TEAMS = [f"team{i:02d}" for i in range(12)]


def weekends(year: int) -> list[datetime]:
    """The season's match days: every Saturday from mid-August of ``year`` to late May."""
    day = datetime(year, 8, 15, 15, 30, tzinfo=UTC)
    day += timedelta(days=(5 - day.weekday()) % 7)
    out = []
    while day < datetime(year + 1, 5, 25, tzinfo=UTC):
        out.append(day)
        day += timedelta(days=7)
    return out


def seasons(first: int = 1990, last: int = 2001, per_day: int = 6, seed: int = 0) -> pa.Table:
    """``per_day`` matches on every match day of the seasons ``first`` to ``last``, each a
    minute after the previous one (no two at the same time)."""
    rng = np.random.default_rng(seed)
    times = [
        d + timedelta(minutes=i)
        for y in range(first, last + 1)
        for d in weekends(y)
        for i in range(per_day)
    ]
    n = len(times)
    home = rng.choice(TEAMS, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    strength = np.array([(int(t[-2:]) - 6) / 4 for t in home])
    p = 1 / (1 + np.exp(-(1.6 * x1 - 0.8 * x2 + strength)))
    return pa.table(
        {
            "id": np.arange(n),
            "t": pa.array(times, pa.timestamp("s", tz="UTC")),
            "home": home,
            "x1": x1.round(4),
            "x2": x2.round(4),
            "flag": rng.random(n) < p,
        }
    )


def project(
    make_project: Callable[..., Project],
    tmp_path: Path,
    *,
    gate: str = "{}",
    table: pa.Table | None = None,
    folder: str = "seasons",
    model: str | None = None,
) -> Project:
    """A project holding ``table`` (default: :func:`seasons`) with the given ``gate:`` and,
    if given, ``model:`` lines replacing the estimator's parameters."""
    spec = SPEC.replace("GATE", gate)
    if model is not None:
        spec = spec.replace(PARAMS, model)
    p = make_project(spec, folder=folder)
    path = tmp_path / f"{folder}.csv"
    pacsv.write_csv(seasons() if table is None else table, path)
    (result,) = p.data.ingest("matches", [path])
    assert result.rows_quarantined == 0, result.reasons
    return p


def write(tmp_path: Path, gate: str = "{}", table: pa.Table | None = None) -> Path:
    """The same project's files, for the command line: loopml.yaml and matches.csv."""
    (tmp_path / "loopml.yaml").write_text(SPEC.replace("GATE", gate))
    pacsv.write_csv(seasons() if table is None else table, tmp_path / "matches.csv")
    return tmp_path / "matches.csv"
