"""The controller's guards: too much data in quarantine pauses retraining (and alerts) until
the recent data is clean again; a challenger whose artifact does not load never reaches
traffic; a canary whose challenger fails too often is rolled back from the shared counters."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopml import Project
from loopml.controller import Controller
from loopml.rollout import Counter, Rollouts
from loopml.testing import STREAM_START, stream_spec, write_stream

T0 = STREAM_START + timedelta(days=12)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 days of events and a champion trained on them."""
    root = tmp_path_factory.mktemp("guards")
    (root / "loopml.yaml").write_text(stream_spec())
    project = Project.open(root)
    try:
        for path in write_stream(root / "incoming", days=12, per_hour=8, drift_day=None):
            project.data.ingest("events", [path])
        loop = Controller(project)
        assert "promoted" in [e["kind"] for e in loop.step(T0).events]
        loop.release()  # a one-off step: the next controller need not wait for the lease
    finally:
        project.close()
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Iterator[Project]:
    shutil.copytree(template, tmp_path / "p")
    p = Project.open(tmp_path / "p")
    yield p
    p.close()


def kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["kind"] for e in events]


def test_a_quarantine_rate_above_the_limit_pauses_retraining(project: Project) -> None:
    bad = project.root / "bad.csv"
    # 600 rows whose x1 is not a number: quarantined row by row (the rest of the file lands).
    rows = ["id,ts,x1,x2,c,outcome"] + [
        f"bad{i},2024-01-13T00:{i % 60:02d}:00Z,oops,0.2,a,1" for i in range(600)
    ]
    bad.write_text("\n".join(rows) + "\n")
    (result,) = project.data.ingest("events", [bad])
    assert result.rows_quarantined == 600
    now = datetime.now(UTC)  # batches are judged by when they were committed: just now
    loop = Controller(project)
    loop.trigger("a retrain is wanted")
    paused = loop.step(now)
    assert paused.phase == "paused" and kinds(paused.events) == ["paused"]
    reason = paused.events[0]
    assert reason["limit"] == 0.05 and reason["quarantine_rate"] > 0.05
    firing = [a for a in project.monitoring.alerts.active() if a.rule == "loop_quarantine"]
    assert len(firing) == 1 and firing[0].severity == "critical"
    # Still bad a day later: nothing trains.
    assert loop.step(now + timedelta(days=1)).phase == "paused"
    assert len(project.models.versions()) == 1
    # Once the bad batch is out of the window, the loop resumes and the pending trigger runs.
    resumed = loop.step(now + timedelta(days=8))
    assert kinds(resumed.events)[:3] == ["resumed", "triggered", "trained"]
    assert not [a for a in project.monitoring.alerts.active() if a.rule == "loop_quarantine"]


def test_a_challenger_that_does_not_load_never_serves(project: Project) -> None:
    def corrupt() -> None:
        # The artifact changes on disk after registration: its SHA-256 no longer matches.
        mv = project.models.versions()[-1]
        digest = next(iter(mv.files.values()))
        path = Path(project.artifacts.files.path(project.artifacts._rel(digest)))
        path.write_bytes(path.read_bytes()[:-100] + b"x" * 100)

    loop = Controller(project, hooks={"before_gate": corrupt})
    loop.trigger("test")
    result = loop.step(T0 + timedelta(days=3))
    assert "load_failed" in kinds(result.events) or "gate_refused" in kinds(result.events)
    assert "canary_started" not in kinds(result.events)
    assert project.registry.aliases(project.models.name) == {"champion": 1}
    assert Rollouts(project.store).active(project.models.name) is None
    assert result.phase == "idle"


def test_a_canary_failing_too_often_is_rolled_back(project: Project) -> None:
    loop = Controller(project)
    loop.trigger("test")
    started = loop.step(T0 + timedelta(days=3))
    assert "canary_started" in kinds(started.events)
    rollouts = Rollouts(project.store)
    r = rollouts.active(project.models.name)
    assert r is not None
    # What the serving workers report: 200 requests to the challenger, 30 of them failed.
    rollouts.add_counts(
        r.id,
        {
            (r.challenger, "requests"): Counter(200, 200, 200),
            (r.challenger, "errors"): Counter(30, 30, 30),
            (r.champion, "requests"): Counter(800, 800, 800),
        },
    )
    result = loop.step(T0 + timedelta(days=3, hours=1))
    assert kinds(result.events) == ["rolled_back"]
    assert "error rate" in result.events[0]["reasons"][0]
    assert rollouts.get(r.id).status == "rolled_back"
    assert "challenger" not in project.registry.aliases(project.models.name)
    assert project.registry.aliases(project.models.name)["champion"] == 1


def test_a_shadow_rollout_is_judged_on_the_same_requests(tmp_path: Path) -> None:
    from loopml.controller import replay

    loop_spec = """\
  triggers: {min_interval: 1d}
  retrain: {mode: stateless, window: 10d, min_rows: 200}
  rollout:
    strategy: shadow
    shadow: {fraction: 0.5, min_labels: 200}
  monitor_every: null
"""
    root = tmp_path / "shadow"
    root.mkdir()
    (root / "loopml.yaml").write_text(stream_spec(loop=loop_spec))
    with Project.open(root) as p:
        for path in write_stream(root / "incoming", days=16, per_hour=12, drift_day=None):
            p.data.ingest("events", [path])
        loop = Controller(p)
        assert "promoted" in kinds(loop.step(STREAM_START + timedelta(days=8)).events)
        loop.trigger("test")
        started = loop.step(STREAM_START + timedelta(days=9))
        assert "shadow_started" in kinds(started.events)
        result = replay(
            p,
            p.features.build(labelled_only=False).table,
            start=STREAM_START + timedelta(days=9),
            until=STREAM_START + timedelta(days=16),
            controller=loop,
        )
        # The champion answered everything; the challenger only scored half of it.
        answered = {v for period in result.periods for v in period.answered}
        first = result.periods[0]  # a whole day in shadow
        assert 0.4 * first.rows < first.shadowed < 0.6 * first.rows
        ended = [e for e in result.events if e["kind"] in ("promoted", "rolled_back")]
        assert ended, [e["kind"] for e in result.events]
        decision = ended[0].get("decision") or ended[0]
        numbers = decision["numbers"]
        assert numbers["paired"] is True and numbers["n_champion"] == numbers["n_challenger"]
        assert numbers["n_challenger"] >= 200
        assert answered <= {1, 2} and 1 in answered


def test_every_loop_phase_has_its_handler(project: Project) -> None:
    from loopml.controller._state import PHASES

    assert sorted(Controller(project)._phases) == sorted(PHASES)


def test_the_loop_and_experiments_are_on_the_project_facade(template: Path, tmp_path: Path) -> None:
    from loopml.rollout import Experiments

    shutil.copytree(template, tmp_path / "q")
    with Project.open(tmp_path / "q") as project:
        assert isinstance(project.loop, Controller)
        assert project.loop is project.loop
        assert isinstance(project.experiments, Experiments)
        project.loop.step(T0 + timedelta(hours=1))
    # Closing the project freed the lease its loop took: another controller steps at once.
    with Project.open(tmp_path / "q") as project:
        assert Controller(project).step(T0 + timedelta(hours=2)).acted
