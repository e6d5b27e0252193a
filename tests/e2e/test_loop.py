"""The continual-learning loop end to end, on a generated stream whose concept drifts on day 12:
a decay alert leads to a retrain, the gate, a canary and the promotion; a challenger trained on
noise is rolled back by the canary at its first step; a controller killed with SIGKILL at any
point of a retrain or a canary is resumed by another without breaking the record; and two
controllers cannot act at once.

The base project (20 days of events, a champion trained on day 8 by the loop itself) is built
once per module; each test works on a copy of its folder.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from loopml import Project
from loopml.controller import Controller, Lease, LoopStore, replay
from loopml.controller._state import PHASES
from loopml.rollout import Rollouts
from loopml.testing import DEFAULT_LOOP, STREAM_START, stream_spec, write_stream

# One worker runs the module (make test's --dist loadgroup): its tests share the base project.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("loop_e2e")]

REPO = Path(__file__).resolve().parents[2]
DAYS, DRIFT_DAY, FIRST_DAY = 20, 12, 8
GATE = "log_loss: {max_change_rel: 0.05}"
# Relaxed gate: a challenger may be ten times worse on its test set and backtest. Used where
# the test is about what comes after the gate (the canary), which must then catch what the gate
# would have refused.
RELAXED_GATE = "log_loss: {max_change_rel: 10.0}"


def day(n: float) -> datetime:
    return STREAM_START + timedelta(days=n)


def write_spec(root: Path, *, loop: str | None = None, relaxed_gate: bool = False) -> None:
    spec = stream_spec() if loop is None else stream_spec(loop=loop)
    assert GATE in spec
    if relaxed_gate:
        spec = spec.replace(GATE, RELAXED_GATE)
    (root / "loopml.yaml").write_text(spec)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed project: 20 days of events (30 an hour), the concept drifting on day 12, and
    version 1, trained and promoted by the loop on day 8."""
    root = tmp_path_factory.mktemp("loop") / "base"
    root.mkdir()
    write_spec(root)
    files = write_stream(root / "incoming", days=DAYS, drift_day=DRIFT_DAY, per_hour=30)
    with Project.open(root) as p:
        for f in files:
            p.data.ingest("events", [f])
        ctl = Controller(p)
        first = ctl.step(day(FIRST_DAY))
        ctl.lease.release()  # the copies' controllers must not wait for it
        assert [e["kind"] for e in first.events] == [
            "triggered",
            "trained",
            "gate_passed",
            "promoted",
        ]
        assert p.registry.aliases(p.models.name) == {"champion": 1}
    return root


@pytest.fixture
def copy(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(base, root)
    return root


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


# --------------------------------------------------------------------- trigger to promotion

# The stream's default loop, but retraining on the last 4 days: its default 10 would train
# mostly on the concept before the drift, a challenger no better than the champion.
PROMOTE_LOOP = DEFAULT_LOOP.replace("window: 10d", "window: 4d")
assert PROMOTE_LOOP != DEFAULT_LOOP


def test_a_decay_alert_retrains_and_the_canary_promotes(copy: Path) -> None:
    write_spec(copy, loop=PROMOTE_LOOP)
    with Project.open(copy) as p:
        name = p.models.name
        ctl = Controller(p)
        table = p.features.build(labelled_only=False).table
        result = replay(p, table, start=day(FIRST_DAY), until=day(19), controller=ctl)
        timeline = ctl.timeline()
        cycle = [e for e in timeline if e["cycle"] == 2]
        assert [k for k in kinds(cycle) if k != "canary_hold"] == [
            "triggered",
            "trained",
            "gate_passed",
            "canary_started",
            "canary_step",
            "promoted",
        ], cycle
        by_kind = {e["kind"]: e for e in cycle}
        (trigger,) = by_kind["triggered"]["triggers"]
        assert trigger["kind"] == "alert" and trigger["rule"] == "decay"
        assert trigger["metric"] == "performance.decayed"
        # after the drift (day 12), not before
        assert datetime.fromisoformat(by_kind["triggered"]["at"]) > day(DRIFT_DAY)
        version = by_kind["trained"]["version"]
        assert version == 2
        assert p.models.get(version).note.startswith("loop cycle 2:")
        assert by_kind["gate_passed"]["version"] == version
        assert by_kind["gate_passed"]["against"] == 1
        started = by_kind["canary_started"]
        assert started["version"] == version and started["share"] == 0.2
        assert (by_kind["canary_step"]["from"], by_kind["canary_step"]["to"]) == (0.2, 0.5)
        promoted = by_kind["promoted"]
        assert (promoted["version"], promoted["previous"]) == (version, 1)

        # The registry's record: the promotion, by the loop.
        moves = p.registry.history(name, "champion")
        assert [(m.from_version, m.to_version, m.by) for m in moves] == [
            (None, 1, "loop"),
            (1, version, "loop"),
        ]
        assert p.registry.aliases(name) == {"champion": version}  # no challenger left
        # The rollout's record: promoted, with the decision of each step.
        rollout = Rollouts(p.store).get(started["rollout"])
        assert rollout.status == "promoted" and rollout.challenger == version
        decisions = rollout.progress.decisions
        assert [(d.step, d.action) for d in decisions] == [(0, "advance"), (1, "advance")]
        assert decisions[0].reasons == by_kind["canary_step"]["reasons"]
        state = ctl.states.load(name)
        assert state.phase == "idle" and state.cycle == 2

        # The traffic: the champion alone, then the canary's shares, then the new version alone.
        started_at = datetime.fromisoformat(started["at"])
        promoted_at = datetime.fromisoformat(promoted["at"])
        before = [p_ for p_ in result.periods if p_.end <= started_at]
        during = [p_ for p_ in result.periods if started_at < p_.end <= promoted_at]
        after = [p_ for p_ in result.periods if p_.end > promoted_at]
        assert before and during and after, [p_.to_dict() for p_ in result.periods]
        assert all(set(p_.answered) == {1} for p_ in before)
        for p_ in during:
            assert set(p_.answered) == {1, version}
            assert 0.1 < p_.answered[version] / p_.rows < 0.65
        assert all(p_.answered == {version: p_.rows} for p_ in after)


# ---------------------------------------------------------------- a bad challenger rolled back


# The stream's default loop, with the rollout's unit: requests are assigned to an arm by their
# event id, the same in every run (the default, the prediction id, is new in each replay).
UNIT_LOOP = """\
  triggers: {alerts: [decay], min_interval: 2d}
  retrain: {mode: stateless, window: 10d, min_rows: 200}
  rollout:
    strategy: canary
    unit: id
    canary: {steps: [0.2, 0.5, 1.0], min_labels: 150, step_timeout: 4d}
  monitor_every: 1d
"""


def shuffled_labels(table: pa.Table, label: str, seed: int = 0) -> pa.Table:
    i = table.schema.get_field_index(label)
    order = np.random.default_rng(seed).permutation(table.num_rows)
    return table.set_column(i, label, table[label].take(pa.array(order)))


def test_a_challenger_trained_on_noise_is_rolled_back_at_the_first_step(
    copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gate compares on the challenger's own test set and on the recent labelled rows:
    # it would refuse a model trained on shuffled labels (as it should). It is relaxed here so
    # that the canary is the line of defence under test.
    write_spec(copy, loop=UNIT_LOOP, relaxed_gate=True)
    with Project.open(copy) as p:
        name = p.models.name
        ctl = Controller(p)
        label = p.monitoring.label_name()
        real_train = p.models.train

        def noisy_train(**kwargs: Any) -> Any:
            """The loop's own training, on its training set with the labels shuffled."""
            ts = kwargs.pop("training_set", None) or p.features.build(as_of=kwargs["as_of"])
            noisy = replace(ts, table=shuffled_labels(ts.table, label))
            return real_train(training_set=noisy, **kwargs)

        monkeypatch.setattr(p.models, "train", noisy_train)
        ctl.trigger("a challenger trained on noise", by="test")
        first = ctl.step(day(FIRST_DAY))
        assert kinds(first.events) == ["triggered", "trained", "gate_passed", "canary_started"]
        rollout_id = first.events[-1]["rollout"]
        bad = first.events[1]["version"]
        assert first.events[1]["metrics"]["roc_auc"] < 0.6  # it learned nothing
        assert bad == 2 and p.registry.aliases(name) == {"champion": 1, "challenger": bad}
        table = p.features.build(labelled_only=False).table
        # Before the drift: the champion is right, the challenger guesses.
        replay(p, table, start=day(FIRST_DAY), until=day(DRIFT_DAY - 1), controller=ctl)

        rollout = Rollouts(p.store).get(rollout_id)
        assert rollout.status == "rolled_back"
        assert rollout.step == 0  # at its first step, never advanced
        (decision,) = rollout.progress.decisions
        assert decision.action == "rollback" and decision.step == 0
        (reason,) = decision.reasons
        assert reason.startswith("log_loss ") and "worse with confidence" in reason
        assert decision.numbers is not None and decision.numbers["verdict"] == "worse"
        (rolled,) = [e for e in ctl.timeline() if e["kind"] == "rolled_back"]
        assert rolled["rollout"] == rollout_id and rolled["version"] == bad
        assert rolled["reasons"] == decision.reasons and rolled["share"] == 0.2
        assert p.registry.aliases(name) == {"champion": 1}  # challenger gone, champion unchanged
        assert [m.to_version for m in p.registry.history(name, "champion")] == [1]
        assert ctl.states.load(name).phase == "idle"

        # The bad version answered at most its share (0.2; a hash assigns it, hence 15%).
        counts = Rollouts(p.store).counts(rollout_id)
        served = {v: counts[v]["requests"].n for v in counts}
        assert served[bad] > 0
        assert served[bad] / (served[bad] + served[1]) <= 0.2 * 1.15, served


# ----------------------------------------------------------------------------------- the lease


def test_two_controllers_cannot_both_act(copy: Path) -> None:
    with Project.open(copy) as p:
        name = p.models.name
        store = LoopStore(p.store)
        holder = Lease(p.store, f"loop:{name}", "controller-A", timedelta(hours=1))
        assert holder.acquire()
        other = Controller(p, holder="controller-B")
        other.trigger("by hand, while A holds the loop")
        before = store.load(name)
        got = other.step(day(FIRST_DAY + 1))
        assert not got.acted and got.events == []
        assert "held by controller-A" in got.note, got.note
        after = store.load(name)
        assert (after.revision, after.phase) == (before.revision, before.phase)
        assert holder.acquire()  # A still holds it (renewed)
        holder.release()
        got = other.step(day(FIRST_DAY + 1))
        assert got.acted and kinds(got.events)[0] == "triggered"


# ------------------------------------------------------------------------------ SIGKILL resume

# A new cycle each day the loop is idle; the canary's margin wide enough (half the champion's
# loss) for a challenger as good as the champion to pass each step in a day, and the gate
# relaxed (see above) so that it does not end a cycle before its canary: every cycle reaches
# every kill point. No monitoring: the schedule drives the loop. A lease of 2 seconds.
KILL_LOOP = """\
  triggers: {schedule: 1d, min_interval: 1d}
  retrain: {mode: stateless, window: 4d, min_rows: 200}
  rollout:
    strategy: canary
    canary: {steps: [0.2, 0.5, 1.0], min_labels: 100, margin: 0.5, step_timeout: 3d}
  monitor_every: null
  lease: 2s
"""
# Where each trial kills the worker, in the order a cycle reaches them (a killed worker's
# successor reaches the same point again, and goes on to the next): before the training, at a
# random moment of it, after the version is registered but before the loop state says so,
# before the gate's evaluation, before a canary's step is applied, after it is committed but
# before the loop state records it, and the same for the promotion: decided, the rollout ended
# but the champion not moved, the champion moved but the loop state not saved.
KILL_PLAN = [
    "before_train",
    "training",
    "after_train",
    "before_gate",
    "before_rollout_change",  # the canary's first step
    "after_rollout_change",
    "before_rollout_change",  # the promotion
    "after_rollout_change",
    "after_promote",
    "before_train",  # the next cycle
    "training",
    "after_train",
]
KILL_SEED = 20240101


class Worker:
    """``python -m tests.e2e._loop_worker``, started ahead (its imports take seconds) and
    waiting for ``go``."""

    def __init__(self, root: Path, folder: Path, until: datetime, pauses: list[str]) -> None:
        self.folder = folder
        self.log = (folder / "workers.log").open("a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e._loop_worker",
                str(root),
                day(FIRST_DAY).isoformat(),
                until.isoformat(),
                "--dir",
                str(folder),
                "--wait",
                *(f"--pause={p}" for p in pauses),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )

    def go(self) -> None:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", self.failure()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def markers(self) -> list[dict[str, Any]]:
        path = self.folder / "markers.jsonl"
        if not path.exists():
            return []
        found = []
        for line in path.read_text().splitlines(keepends=True):
            if line.endswith("\n"):  # a line being written is read on the next look
                found.append(json.loads(line))
        return [x for x in found if x["pid"] == self.proc.pid]

    def seams(self) -> list[str]:
        return [x["seam"] for x in self.markers()]

    def failure(self) -> str:
        self.log.flush()
        return (self.folder / "workers.log").read_text()[-3000:]

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.log.close()


def pauses_for(point: str) -> list[str]:
    # "training": killed at a random moment between the start of the training and the end of
    # the after_train hook, where the worker waits.
    return ["after_train:1"] if point == "training" else [f"{point}:1"]


def kill_at(worker: Worker, point: str, rng: random.Random, *, timeout: float = 60) -> bool:
    """Kill the worker at ``point``; False when it finished its replay first."""
    seam = "before_train" if point == "training" else point
    deadline = time.monotonic() + timeout
    while seam not in worker.seams():
        if worker.proc.poll() is not None:
            assert worker.proc.returncode == 0, worker.failure()
            return False
        assert time.monotonic() < deadline, f"{point} never reached: {worker.failure()}"
        time.sleep(0.01)
    if point == "training":
        until = time.monotonic() + rng.uniform(0.0, 0.6)
        while time.monotonic() < until and "after_train" not in worker.seams():
            time.sleep(0.005)
    worker.kill()
    assert worker.proc.returncode == -signal.SIGKILL
    return True


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.close()


def test_a_controller_killed_anywhere_is_resumed_without_breaking_the_record(
    copy: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    write_spec(copy, loop=KILL_LOOP, relaxed_gate=True)
    folder = tmp_path / "work"
    folder.mkdir()
    until = day(DAYS - 2)
    rng = random.Random(KILL_SEED)
    plan: list[str | None] = [*KILL_PLAN, None]  # None: the last worker runs to the end

    def start(point: str | None) -> Worker:
        w = Worker(copy, folder, until, pauses_for(point) if point else [])
        workers.append(w)
        return w

    killed: list[tuple[str, Worker]] = []
    current = start(plan[0])
    for i, point in enumerate(plan):
        upcoming = start(plan[i + 1]) if i + 1 < len(plan) else None
        current.go()
        if point is None:
            current.proc.wait(timeout=120)
            assert current.proc.returncode == 0, current.failure()
            assert current.proc.stdout is not None
            assert json.loads(current.proc.stdout.read().splitlines()[-1])["finished"]
        elif kill_at(current, point, rng):
            killed.append((point, current))
            # Between two workers: the state is a valid one, and never two active rollouts.
            with Project.open(copy) as p:
                state = LoopStore(p.store).load(p.models.name)
                assert state.phase in PHASES
                active = [r for r in Rollouts(p.store).list(p.models.name) if r.active]
                assert len(active) <= 1
            with (folder / "revisions.jsonl").open("a") as f:
                f.write(json.dumps({"pid": "test", "revision": state.revision}) + "\n")
        if upcoming is None:
            break
        current = upcoming
    assert len(killed) >= 10 and {k for k, _ in killed} == set(KILL_PLAN), killed

    # The loop state's revision only grew, through every worker.
    revisions = [
        json.loads(x)["revision"]
        for x in (folder / "revisions.jsonl").read_text().splitlines()
        if x.strip()
    ]
    assert revisions == sorted(revisions) and revisions[-1] > revisions[0], revisions
    # A killed worker's lease held its successor back until it expired (2s), no longer.
    held_by_the_killed = 0
    for _, dead in killed:
        successor = workers[workers.index(dead) + 1]
        notes = [m["note"] for m in successor.markers() if m["seam"] == "lease_held"]
        assert all(f":{dead.proc.pid}:" in n for n in notes), notes
        held_by_the_killed += bool(notes)
    assert held_by_the_killed >= 1

    with Project.open(copy) as p:
        check_invariants(p, until=until)


def check_invariants(p: Project, *, until: datetime) -> None:
    name = p.models.name
    timeline = LoopStore(p.store).events(name)
    rollouts = Rollouts(p.store).list(name, limit=1000)
    state = LoopStore(p.store).load(name)

    # One version per cycle that reached training, recorded once.
    cycles: Counter[int] = Counter()
    for v in p.models.versions():
        found = re.match(r"loop cycle (\d+):", v.note)
        assert found, f"version {v.version} was not trained by the loop: {v.note!r}"
        cycles[int(found.group(1))] += 1
    assert all(n == 1 for n in cycles.values()), cycles
    trained = [e for e in timeline if e.kind == "trained"]
    assert Counter(e.cycle for e in trained) == cycles
    for e in trained:
        assert p.models.get(e.detail["version"]).note.startswith(f"loop cycle {e.cycle}:")
    triggered = {e.cycle for e in timeline if e.kind == "triggered"}
    skipped = {e.cycle for e in timeline if e.kind == "training_skipped"}
    in_training = {state.cycle} if state.phase == "training" else set()
    assert set(cycles) == triggered - skipped - in_training
    assert len(cycles) >= 3  # the base's cycle and at least two in the replay

    # Never two active rollouts; the loop's phase agrees with the rollouts.
    active = [r for r in rollouts if r.active]
    assert len(active) <= 1
    assert state.phase in PHASES
    if state.phase in ("canary", "shadow"):
        assert [r.id for r in active] == [state.data["rollout"]]
    elif state.phase == "idle":
        assert active == []

    # The challenger alias exists only while a rollout is active, and names its challenger.
    aliases = p.registry.aliases(name)
    assert aliases.get("challenger") == (active[0].challenger if active else None), aliases

    # Every promotion of the champion is a `promoted` event of the loop, in order.
    moves = [m for m in p.registry.history(name, "champion")]
    assert all(m.by == "loop" and m.action == "promote" for m in moves), moves
    promoted = [e for e in timeline if e.kind == "promoted"]
    assert [m.to_version for m in moves] == [e.detail["version"] for e in promoted]
    assert len(moves) >= 2

    # Every canary step was applied once, and recorded once, with the decision it applied.
    assert any(r.status == "promoted" for r in rollouts)
    steps = [e for e in timeline if e.kind == "canary_step"]
    for r in rollouts:
        mine = [e for e in steps if e.detail["rollout"] == r.id]
        assert [e.detail["from"] for e in mine] == r.steps[: r.step], (r.to_dict(), mine)
        applied = [d for d in r.progress.decisions if d.step < r.step]
        assert [d.step for d in applied] == list(range(r.step))
        assert all(d.action == "advance" for d in applied)
        assert [e.detail["reasons"] for e in mine] == [d.reasons for d in applied]
        ended = [
            e
            for e in timeline
            if e.kind in ("rolled_back", "rollout_ended") and e.detail.get("rollout") == r.id
        ]
        if r.status == "promoted":
            assert [e.detail["version"] for e in promoted].count(r.challenger) == 1
        elif not r.active:
            assert len(ended) == 1, (r.to_dict(), ended)

    # The replay driver served each event once (its own concern: see _loop_worker.py).
    assert logged_predictions(p) == events_between(p, day(FIRST_DAY), until)


def logged_predictions(p: Project) -> int:
    """Predictions in the monitored log (each id once), shadow ones left out."""
    p.monitoring.land()
    preds = p.monitoring.log.predictions()
    if preds is None:
        return 0
    return preds.filter(pc.not_equal(pc.fill_null(preds["mode"], ""), "shadow")).num_rows


def events_between(p: Project, lo: datetime, hi: datetime) -> int:
    table = p.features.build(labelled_only=False).table
    t = table["_event_time"]
    return table.filter(
        pc.and_(pc.greater_equal(t, pa.scalar(lo, t.type)), pc.less(t, pa.scalar(hi, t.type)))
    ).num_rows


def test_a_replay_in_two_calls_logs_every_prediction(copy: Path) -> None:
    # The monitored log keeps the first prediction of an id: a second replay on the project
    # (resumed, or run in chunks) must not reuse the first one's ids.
    with Project.open(copy) as p:
        ctl = Controller(p)
        table = p.features.build(labelled_only=False).table
        for lo, hi in ((FIRST_DAY, FIRST_DAY + 1), (FIRST_DAY + 1, FIRST_DAY + 2)):
            replay(p, table, start=day(lo), until=day(hi), controller=ctl)
        assert logged_predictions(p) == events_between(p, day(FIRST_DAY), day(FIRST_DAY + 2))
