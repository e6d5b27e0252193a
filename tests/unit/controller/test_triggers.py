"""The loop's defaults, on a project that declares no trigger: new data and the loop's own
monitoring (decay, concept drift) start a retrain; a step that finds nothing due says, trigger by
trigger, why; each cycle refits on every row up to its cut-off and its gate event carries every
check with its rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest

from loopml import Project
from loopml.cli import main
from loopml.controller import Controller, replay
from loopml.spec import MetricBound
from loopml.testing import STREAM_START, stream_spec, write_stream

# Every trigger left at its default: only how to roll out and how often to monitor are said.
DEFAULTS = """\
  rollout: {strategy: direct}
  monitor_every: 1d
"""
FIRST = STREAM_START + timedelta(days=8)


def kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["kind"] for e in events]


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return write_stream(tmp_path / "incoming", days=16, per_hour=12, drift_day=10)


def first_champion(root: Path, files: list[Path], loop: str = DEFAULTS) -> Project:
    """A project whose first 8 days are ingested and whose loop trained its first champion."""
    root.mkdir()
    (root / "loopml.yaml").write_text(stream_spec(loop=loop))
    p = Project.open(root)
    for path in files[:8]:
        p.data.ingest("events", [path])
    loop = Controller(p)
    first = loop.step(FIRST)
    loop.release()  # a one-off step: the tests' controllers must not wait for the lease
    assert kinds(first.events) == ["triggered", "trained", "gate_passed", "promoted"]
    return p


@pytest.fixture
def project(tmp_path: Path, files: list[Path]) -> Iterator[Project]:
    p = first_champion(tmp_path / "p", files)
    yield p
    p.close()


def test_the_first_cycle_refits_and_reports_every_gate_check(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    events = Controller(project).timeline()
    trained = next(e for e in events if e["kind"] == "trained")
    rows = project.features.build(as_of=FIRST).table
    labelled = rows.filter(pc.is_valid(rows["y"]))
    # The loop refits by default: the artifact learned every labelled row up to its cut-off.
    assert trained["refit"] is True and trained["learned"]["rows"] == labelled.num_rows
    assert trained["learned"]["end"] == pc.max(labelled["_event_time"]).as_py().isoformat()
    assert project.models.get("champion").lineage["learned"] == trained["learned"]
    gate = next(e for e in events if e["kind"] == "gate_passed")
    checks = {c["name"]: c for c in gate["checks"]}
    # The stream's spec asks for a 3-day backtest: there, with its rows, beside the test set.
    assert set(checks) == {"smoke", "test:log_loss", "backtest:log_loss", "slices"}
    assert (
        checks["test:log_loss"]["rows"] == trained["rows"]["test"] == gate["sets"]["test"]["rows"]
    )
    assert checks["backtest:log_loss"]["rows"] == gate["sets"]["backtest"]["rows"] > 0
    assert checks["slices"]["status"] == "skipped"
    # The timeline prints the counts, not only --json.
    assert main(["loop", "timeline", "-p", str(project.root)]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())  # wrapped cells, joined
    rows, back = trained["rows"], checks["backtest:log_loss"]["rows"]
    assert f"on {rows['train']:,} rows (valid {rows['valid']:,}, test {rows['test']:,})" in out
    assert f"refitted on all {labelled.num_rows:,} rows" in out
    assert f"test {rows['test']:,} rows; backtest {back:,} rows" in out
    assert f"backtest:log_loss passed on {back:,}" in out


def test_new_data_triggers_a_retrain_by_default(project: Project, files: list[Path]) -> None:
    for path in files[8:11]:
        project.data.ingest("events", [path])
    result = Controller(project).step(FIRST + timedelta(days=3))
    assert kinds(result.events)[:2] == ["triggered", "trained"], result.to_dict()
    (fired,) = result.events[0]["triggers"]
    champion = project.models.get(1)
    seen = sum(champion.lineage["rows"].values())
    assert fired["kind"] == "new_data" and fired["limit"] == max(200, -(-seen // 10))
    assert fired["rows"] >= fired["limit"] and "a tenth" in fired["why"]


def test_new_data_is_counted_on_nanosecond_times(tmp_path: Path, files: list[Path]) -> None:
    # Times with a fraction of a second land as nanoseconds with a time zone in the lake.
    for path in files:
        path.write_text(re.sub(r"(\d\d:\d\d:\d\d)Z", r"\1.000000Z", path.read_text()))
    with first_champion(tmp_path / "ns", files) as p:
        kind = p.data.query("SELECT typeof(ts) AS t FROM events LIMIT 1").to_pylist()
        assert kind == [{"t": "TIMESTAMPTZ_NS"}]
        for path in files[8:11]:
            p.data.ingest("events", [path])
        result = Controller(p).step(FIRST + timedelta(days=3))
        assert [t["kind"] for t in result.events[0]["triggers"]] == ["new_data"]


def test_a_refused_cycle_does_not_retrigger_on_the_same_rows(
    project: Project, files: list[Path]
) -> None:
    for path in files[8:11]:
        project.data.ingest("events", [path])
    gate = project.models.project_spec.gate
    impossible = {"log_loss": MetricBound(max=1e-9)}
    project.models.project_spec.gate = gate.model_copy(update={"metrics": impossible})
    loop = Controller(project)
    refused = loop.step(FIRST + timedelta(days=3))
    assert kinds(refused.events) == ["triggered", "trained", "gate_refused"]
    # The champion's data is as old as before, but the refused cycle used the new rows.
    quiet = loop.step(FIRST + timedelta(days=5))
    assert quiet.events == []
    (new_data,) = [t for t in quiet.triggers if t["kind"] == "new_data"]
    assert new_data["rows"] == 0 and "after the last cycle's start" in new_data["detail"]


def test_the_monitor_finding_decay_triggers_a_retrain_by_default(
    tmp_path: Path, files: list[Path]
) -> None:
    # No alert rule named, no new-data trigger: only the loop's own monitoring of the champion.
    loop = DEFAULTS + "  triggers: {new_rows: null}\n"
    with first_champion(tmp_path / "m", files, loop) as p:
        for path in files[8:]:
            p.data.ingest("events", [path])
        result = replay(
            p,
            p.features.build(labelled_only=False).table,
            start=FIRST,
            until=FIRST + timedelta(days=6),
            controller=Controller(p),
        )
        triggered = [e for e in result.events if e["kind"] == "triggered"]
        assert triggered, [(period.end, period.to_dict()["events"]) for period in result.periods]
        fired = triggered[0]["triggers"]
        assert {t["kind"] for t in fired} == {"monitoring"}
        assert {t["signal"] for t in fired} <= {"decay", "concept_drift"}
        # Seen after the concept drifted on day 10, not before.
        assert triggered[0]["at"] > (STREAM_START + timedelta(days=10)).isoformat()


def test_a_step_with_nothing_due_says_why(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = Controller(project)
    quiet = loop.step(FIRST + timedelta(hours=12))
    loop.release()
    assert quiet.events == []
    states = {s["kind"]: s for s in quiet.to_dict()["triggers"]}
    assert set(states) >= {"manual", "schedule", "new_data", "monitoring", "alerts", "min_interval"}
    assert not any(s["fired"] for s in states.values())
    assert states["new_data"]["limit"] >= 200 and "new rows" in states["new_data"]["detail"]
    assert "off" in states["schedule"]["detail"]
    assert "decay" in states["monitoring"]["detail"]
    assert "the next may start at" in states["min_interval"]["detail"]
    root = str(project.root)
    now = (FIRST + timedelta(hours=13)).isoformat()
    assert main(["loop", "step", "--now", now, "-p", root]) == 0
    out = capsys.readouterr().out
    assert "nothing due at" in out and "new data:" in out and "schedule: off" in out
    assert "monitoring:" in out and "min_interval:" in out
    assert main(["loop", "status", "-p", root]) == 0
    out = capsys.readouterr().out
    assert "triggers:" in out and "new data:" in out and "monitoring:" in out
