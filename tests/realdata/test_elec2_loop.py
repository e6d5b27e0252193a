"""The continual-learning loop on the real elec2 stream: the NSW electricity market, replayed
half-hour by half-hour in row order, each label (is the price going UP?) known right after its
prediction. A model trained on the first three weeks and never touched again is compared with the
loop, which retrains every week on the newest rows and promotes what passes the gate, in
prequential accuracy over the rest of the stream (2.5 years, 44,304 rows): every row is predicted
by the model serving at its time, before its label is used.

The figures are printed (``pytest -s``) and quoted in the README. Skipped where
../shared/datasets is absent; CI has it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

from loopml import Project
from loopml.controller import Controller, replay
from tests.conftest import DATASETS

pytestmark = pytest.mark.realdata

ELEC2 = DATASETS / "elec2.csv"
ROWS = 45_312
# elec2 has no usable clock (its `date` goes backwards 5 times), but it is half-hourly and in
# row order from 7 May 1996 (Harries 1999): row i happened at STREAM_START + 30 min * i.
STREAM_START = datetime(1996, 5, 7, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)
TRAIN_DAYS = 21  # the static model's data: the first 3 weeks
TRAIN_END = STREAM_START + timedelta(days=TRAIN_DAYS)
# The replay's period: the loop steps at the end of each week. A retrain is due every week, so
# shorter periods would add steps that only serve (one a day: 7 times the steps, for nothing).
PERIOD = timedelta(days=7)
# The model's inputs, as in test_elec2_monitoring.py (see there why): `date` is left out (it is
# the position in the stream, outside every training range later on); `nswprice` stays, as in
# the usual benchmark, though `class` is derived from it (UP: above its last-24-hours average).
FEATURES = ["day", "period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]

SPEC = """\
project: elec2
sources:
  market:
    format: csv
    path: incoming/*.csv
    timestamp: ts
    primary_key: [id]
features:
  event: {{source: market}}
  request: [id, ts, {features}]
  label: {{name: up, expr: "class == 'UP'", delay: 1m}}
  vector: [{features}]
model:
  name: elec2
  task: binary
  params: {{n_estimators: 40, num_leaves: 15, learning_rate: 0.1, min_child_samples: 10}}
  split: {{method: time, test: 0.2, valid: 0.1}}
  # Decide at 0.5: accuracy is the figure, and every version decides the same way.
  imbalance: {{threshold: fixed, fixed_threshold: 0.5}}
loop:
{loop}
"""

# The gate is the default one: the challenger's pr_auc may not fall more than 0.005 behind the
# champion's, on the challenger's held-out newest rows and on the last week. Direct rollout: a
# challenger that passes serves from the next request on. A canary would need hundreds of
# labelled requests per arm and step (days of this stream) while part of the traffic stays on
# the stale model, and a weekly retrain leaves it little time to finish. Monitoring is left
# out (monitor_every: null): the schedule drives the loop; judging windows would only slow it.
LOOPS = {
    # Warm start: 10 slower trees a week on the week's rows; every 8th cycle (two months)
    # starts again from scratch on the last 4 weeks, so the model does not grow forever.
    "stateful": """\
  triggers: {schedule: 7d, min_interval: 1d}
  retrain: {mode: stateful, min_rows: 200, full_every: 8, window: 28d}
  rollout: {strategy: direct}
  monitor_every: null
""",
    # From scratch every week on the last two weeks only.
    "stateless": """\
  triggers: {schedule: 7d, min_interval: 1d}
  retrain: {mode: stateless, window: 14d, min_rows: 200}
  rollout: {strategy: direct}
  monitor_every: null
""",
}


@dataclass
class Run:
    name: str
    rows: int
    static: float  # accuracy of version 1 on every row after its training data
    loop: float  # accuracy of the served predictions on the same rows
    trained: int
    promoted: int
    refused: int
    served: int  # versions that answered requests
    seconds: float


@pytest.fixture(scope="module")
def stream_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """elec2 as an event source: a row number as id, the synthetic timestamp, the features and
    the class."""
    if not ELEC2.exists():
        pytest.skip(f"the real data sets are not here ({DATASETS}); CI has them")
    data = pcsv.read_csv(ELEC2)
    assert data.num_rows == ROWS
    ts = pa.array([STREAM_START + HALF_HOUR * i for i in range(ROWS)], pa.timestamp("us", tz="UTC"))
    events = pa.table(
        {
            "id": pa.array(np.arange(ROWS)),
            "ts": ts,
            **{c: data[c] for c in FEATURES},
            "class": data["class"],
        }
    )
    path = tmp_path_factory.mktemp("elec2") / "elec2.csv"
    pcsv.write_csv(events, path)
    return path


def run_loop(root: Path, stream_csv: Path, name: str, loop: str) -> Run:
    started = time.perf_counter()
    root.mkdir(parents=True)
    (root / "loopml.yaml").write_text(
        SPEC.format(features=", ".join(FEATURES), loop=loop.rstrip("\n"))
    )
    with Project.open(root) as project:
        (ingested,) = project.data.ingest("market", [stream_csv])
        assert ingested.rows_accepted == ROWS, ingested.reasons
        table = project.features.build().table  # every row, its label and when it is known
        # The static model, the same for every variant: the first 3 weeks, gated, promoted.
        models = project.models
        static = models.train(as_of=TRAIN_END, note="static: the first 3 weeks").version
        assert static is not None and static.version == 1
        assert models.evaluate(1, as_of=TRAIN_END).passed
        models.promote(1, reason="the static model")
        result = replay(
            project,
            table,
            start=TRAIN_END,
            until=STREAM_START + HALF_HOUR * ROWS,
            every=PERIOD,
            controller=Controller(project),
        )
        rows, static_acc, loop_acc, served = prequential(project, table)
    kinds = [e["kind"] for e in result.events]
    return Run(
        name,
        rows,
        static_acc,
        loop_acc,
        kinds.count("trained"),
        kinds.count("promoted"),
        kinds.count("gate_refused"),
        served,
        time.perf_counter() - started,
    )


def prequential(project: Project, table: pa.Table) -> tuple[int, float, float, int]:
    """Rows, static accuracy, loop accuracy (over the rows after the static model's data) and
    how many versions served. Each decision is the score against its model's threshold (0.5)."""
    after = pc.greater_equal(table["_event_time"], pa.scalar(TRAIN_END, pa.timestamp("us", "UTC")))
    rows = table.filter(after)
    ids = rows["id"].to_numpy()
    y = rows["up"].to_numpy(zero_copy_only=False).astype(bool)
    static = project.models.load(1)
    static_right = (static.predict(rows) >= static.threshold) == y
    # The loop: what was served, from the prediction log, each row with the version that
    # answered it when it arrived (before its label was sent).
    project.monitoring.land()
    log = project.monitoring.log.predictions()
    assert log is not None
    served = log.filter(pc.equal(log["mode"], "batch"))
    order = np.argsort(served["f.id"].to_numpy())
    logged_ids = served["f.id"].to_numpy()[order]
    np.testing.assert_array_equal(logged_ids, np.sort(ids))  # every row answered, once
    position = np.searchsorted(logged_ids, ids)
    scores = served["score"].to_numpy()[order][position]
    versions = served["version"].to_numpy()[order][position]
    thresholds = {v: project.models.load(int(v)).threshold for v in np.unique(versions)}
    threshold = np.array([thresholds[v] for v in versions])
    loop_right = (scores >= threshold) == y
    # The served answers of version 1 are the static model's: the same rows, the same scores.
    first = versions == 1
    assert first.sum() >= PERIOD // HALF_HOUR
    np.testing.assert_allclose(scores[first], static.predict(rows.filter(pa.array(first))))
    return len(ids), float(static_right.mean()), float(loop_right.mean()), len(thresholds)


def show(runs: list[Run]) -> None:
    print(
        f"\nelec2, prequential accuracy after the first {TRAIN_DAYS} days (static: trained on "
        f"them; loop: retrained every {PERIOD.days} days; decisions at 0.5)"
    )
    print(
        f"{'variant':<10} {'rows':>6} {'static':>7} {'loop':>7} {'gain':>6} "
        f"{'trained':>7} {'promoted':>8} {'refused':>7} {'served':>6} {'seconds':>7}"
    )
    for r in runs:
        print(
            f"{r.name:<10} {r.rows:6d} {r.static:7.3f} {r.loop:7.3f} {r.loop - r.static:+6.3f} "
            f"{r.trained:7d} {r.promoted:8d} {r.refused:7d} {r.served:6d} {r.seconds:7.1f}"
        )


# Each variant replays the whole stream (~45 s alone): one group each, so that make test's two
# workers run them side by side.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.xdist_group(f"elec2_loop_{n}")) for n in LOOPS]
)
def test_the_loop_beats_the_static_model(name: str, stream_csv: Path, tmp_path: Path) -> None:
    run = run_loop(tmp_path / name, stream_csv, name, LOOPS[name])
    show([run])
    assert run.rows == ROWS - TRAIN_DAYS * 48
    # A retrain every week (131 of them); about half pass the gate, and they serve.
    assert run.trained >= 125 and run.promoted >= 40 and run.served >= run.promoted
    # Measured: static 0.616; loop 0.763 (stateful), 0.767 (stateless), each retrain refitted
    # on every row up to its cut-off (0.756 and 0.754 without the refit).
    assert 0.55 < run.static < 0.68
    assert run.loop > run.static + 0.08, f"{run.loop:.3f} vs static {run.static:.3f}"
