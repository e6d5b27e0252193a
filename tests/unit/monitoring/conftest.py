"""A small project that is not flights, for the feedback and monitoring tests: one event a few
times a day (a low-volume source), a model trained on the first two thirds, and the last third
kept as traffic the model never saw."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from loopml import Project

SPEC = """\
project: synth
sources:
  events: {format: csv, timestamp: t, primary_key: [id]}
features:
  event: {source: events}
  request: [id, t, x1, x2, cat]
  derived: {x12: "x1 * x2"}
  label: {name: target, expr: "LABEL", delay: 1h}
  vector: [x1, x2, cat, x12]
model:
  name: m
  task: TASK
  params: {n_estimators: 40, num_leaves: 15, min_child_samples: 10}
  split: {method: time, test: 0.25, valid: 0.15}
gate: {backtest: null}
"""
START = datetime(2021, 1, 1, tzinfo=UTC)
PER_DAY = 3
ROWS = 1200
TRAIN = 800  # the model's data; the rest is traffic


def events(n: int = ROWS, seed: int = 0) -> pa.Table:
    """``n`` events, ``PER_DAY`` a day: a boolean label (``flag``, also as 0/1 in ``flag01``),
    a two-class word label (``move``: UP/DOWN) and a number (``value``), all from x1, x2, cat."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    score = 2 * x1 - x2 + (cat == "a") * 1.5 + rng.normal(scale=0.7, size=n)
    flag = score > 0.5
    step = timedelta(days=1) / PER_DAY
    return pa.table(
        {
            "id": np.arange(n),
            "t": pa.array([START + step * i for i in range(n)], pa.timestamp("us", tz="UTC")),
            "x1": x1,
            "x2": x2,
            "cat": cat,
            "flag": flag,
            "flag01": flag.astype(np.int64),
            "move": np.where(flag, "UP", "DOWN"),
            "value": 3 * x1 + rng.normal(scale=0.3, size=n),
        }
    )


@dataclass(frozen=True)
class Trained:
    """A trained project with a champion, closed (tests work on copies), and its traffic."""

    root: Path
    traffic: pa.Table  # the events after the training data, raw (request columns and labels)
    label: str  # the column of ``traffic`` the label expression reads

    @contextmanager
    def copy(self, where: Path, *, extra: str = "") -> Iterator[Project]:
        """A private copy of the project (with ``extra`` appended to loopml.yaml)."""
        root = where / "project"
        shutil.copytree(self.root, root)
        if extra:
            with (root / "loopml.yaml").open("a") as f:
                f.write(extra)
        p = Project.open(root)
        try:
            yield p
        finally:
            p.close()


def train_project(root: Path, *, label: str = "flag", task: str = "binary") -> Trained:
    """A project trained on the first ``TRAIN`` events, its version 1 champion."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "loopml.yaml").write_text(SPEC.replace("LABEL", label).replace("TASK", task))
    data = events()
    pacsv.write_csv(data.slice(0, TRAIN), root / "events.csv")
    p = Project.open(root)
    try:
        (r,) = p.data.ingest("events", [root / "events.csv"])
        assert r.rows_accepted == TRAIN, r.reasons
        version = p.models.train().version
        assert version is not None
        p.models.promote(version.version, force=True, reason="test")
    finally:
        p.close()
    return Trained(root, data.slice(TRAIN), label)


def requests(traffic: pa.Table) -> list[dict[str, object]]:
    """The traffic as HTTP request rows (the request features only)."""
    cols = ["id", "t", "x1", "x2", "cat"]
    return [{**r, "t": r["t"].isoformat()} for r in traffic.select(cols).to_pylist()]


def features_of(p: Project, traffic: pa.Table) -> pa.Table:
    """The traffic's complete feature rows (with ``_event_time``), as batch prediction has them."""
    return p.features.build_for(traffic.select(["id", "t", "x1", "x2", "cat"]))


def positive_rate(values: pa.Array | pa.ChunkedArray) -> float:
    return float(pc.mean(pc.cast(values, pa.float64())).as_py())


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The binary model (a boolean label), trained once per test process."""
    return train_project(tmp_path_factory.mktemp("synth") / "p")


@pytest.fixture(scope="session")
def synth_regression(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A regression model on the same events (label: value)."""
    return train_project(
        tmp_path_factory.mktemp("synth_reg") / "p", label="value", task="regression"
    )
