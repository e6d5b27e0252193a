"""`loopml loop` and `loopml rollout` on the command line, over a small generated stream."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopml import Project
from loopml.cli import main
from loopml.controller import Controller, Lease, StepResult
from loopml.rollout import Counter, Rollouts
from loopml.testing import STREAM_START, stream_spec, write_stream

T0 = STREAM_START + timedelta(days=16)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def stream_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 days of events, ingested once per module; tests work on copies."""
    root = tmp_path_factory.mktemp("stream")
    (root / "loopml.yaml").write_text(stream_spec())
    project = Project.open(root)
    try:
        for path in write_stream(root / "incoming", days=16, per_hour=6, drift_day=None):
            project.data.ingest("events", [path])
    finally:
        project.close()
    return root


@pytest.fixture
def stream(stream_template: Path, tmp_path: Path) -> str:
    shutil.copytree(stream_template, tmp_path / "p")
    return str(tmp_path / "p")


@pytest.fixture
def empty(tmp_path: Path) -> str:
    """A project with the stream's spec and no data."""
    (tmp_path / "loopml.yaml").write_text(stream_spec())
    return str(tmp_path)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


def test_the_loop_by_hand(stream: str, capsys: pytest.CaptureFixture[str]) -> None:
    # No champion yet: one step trains, gates and promotes the first version.
    code, out, _ = run(capsys, "loop", "step", "--now", iso(T0), "-p", stream, "--json")
    first = json.loads(out)
    assert code == 0 and first["acted"] and first["phase"] == "idle" and first["cycle"] == 1
    assert kinds(first["events"]) == ["triggered", "trained", "gate_passed", "promoted"]
    assert first["events"][0]["triggers"] == [{"kind": "no_champion"}]

    code, out, _ = run(capsys, "loop", "status", "-p", stream, "--json")
    status = json.loads(out)
    assert code == 0 and status["phase"] == "idle" and status["cycle"] == 1
    assert status["aliases"] == {"champion": 1} and status["rollout"] is None
    assert status["lease"] is None  # a one-shot step frees the lease for the next one
    code, out, _ = run(capsys, "loop", "status", "-p", stream)
    assert code == 0 and "idle, cycle 1" in out and "champion 1" in out and "lease: free" in out

    code, out, _ = run(capsys, "loop", "trigger", "--reason", "fresh labels", "-p", stream)
    assert code == 0 and "fresh labels" in out and "at the next step" in out
    assert "asked: a retrain" in run(capsys, "loop", "status", "-p", stream)[1]

    # The manual trigger starts cycle 2 (well inside min_interval, which it overrides); the
    # stream's loop rolls the new version out by canary.
    later = T0 + timedelta(days=1)
    code, out, _ = run(capsys, "loop", "step", "--now", iso(later), "-p", stream, "--json")
    second = json.loads(out)
    assert code == 0 and second["cycle"] == 2
    trigger = second["events"][0]
    assert trigger["kind"] == "triggered" and trigger["cycle"] == 2
    assert trigger["triggers"][0]["kind"] == "manual"
    assert trigger["triggers"][0]["reason"] == "fresh labels"
    assert kinds(second["events"]) == ["triggered", "trained", "gate_passed", "canary_started"]
    rollout_id = second["events"][-1]["rollout"]

    project = Project.open(Path(stream))
    try:
        Rollouts(project.store).add_counts(
            rollout_id, {(1, "requests"): Counter(80, 80, 80), (2, "requests"): Counter(20, 20, 20)}
        )
    finally:
        project.close()
    code, out, _ = run(capsys, "rollout", "status", "-p", stream, "--json")
    active = json.loads(out)["active"]
    assert code == 0 and active["id"] == rollout_id and active["challenger"] == 2
    assert active["step"] == 0 and active["share"] == 0.2
    assert active["counts"]["2"]["requests"]["n"] == 20
    code, out, _ = run(capsys, "rollout", "status", "-p", stream)
    assert code == 0 and "step 1 of 3" in out and "challenger" in out and "requests" in out
    assert "canary of version 2" in run(capsys, "loop", "status", "-p", stream)[1]

    code, out, _ = run(capsys, "rollout", "stop", "--reason", "not today", "-p", stream, "--json")
    stopped = json.loads(out)
    assert code == 0 and stopped["status"] == "stopped" and stopped["challenger_alias_freed"]
    assert stopped["reason"].startswith("not today")
    code, out, _ = run(capsys, "loop", "status", "-p", stream, "--json")
    assert json.loads(out)["aliases"] == {"champion": 1}

    # The loop notices at its next step and goes back to idle.
    code, out, _ = run(
        capsys, "loop", "step", "--now", iso(later + timedelta(hours=1)), "-p", stream
    )
    assert code == 0 and "rollout_ended" in out and "now idle, cycle 2" in out
    code, out, _ = run(capsys, "rollout", "status", "-p", stream)
    assert code == 0 and "no active rollout" in out and "stopped" in out and "not today" in out

    code, out, _ = run(capsys, "loop", "timeline", "-p", stream, "--json")
    events = json.loads(out)
    assert code == 0
    assert kinds(events) == [*kinds(first["events"]), *kinds(second["events"]), "rollout_ended"]
    assert [e["cycle"] for e in events] == [1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert events[0]["at"].startswith(T0.date().isoformat())
    code, out, _ = run(capsys, "loop", "timeline", "-p", stream)
    assert code == 0 and "promoted" in out and "by hand" in out and "no champion yet" in out


def test_a_fresh_project(empty: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "loop", "status", "-p", empty)
    assert code == 0 and "idle, cycle 0" in out and "no events yet" in out
    code, out, _ = run(capsys, "loop", "timeline", "-p", empty, "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, "rollout", "status", "-p", empty)
    assert code == 0 and "no active rollout" in out
    code, out, _ = run(capsys, "rollout", "status", "-p", empty, "--json")
    assert json.loads(out) == {
        "model": "stream_model",
        "active": None,
        "experiment": None,
        "recent": [],
    }
    code, out, err = run(capsys, "rollout", "stop", "-p", empty)
    assert code == 2 and "no active rollout to stop" in err
    code, out, _ = run(capsys, "rollout", "stop", "-p", empty, "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "not_found"


def test_bad_input_is_a_usage_error(empty: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "loop", "step", "--now", "tomorrow", "-p", empty)
    assert code == 2 and "--now" in err and "'tomorrow' is not an ISO 8601 time" in err
    code, _, err = run(capsys, "loop", "step", "--now", "2024-01-17T00:00:00", "-p", empty)
    assert code == 2 and "--now" in err and "no timezone" in err
    code, out, _ = run(capsys, "loop", "step", "--now", "tomorrow", "-p", empty, "--json")
    assert json.loads(out)["error"]["details"] == {"field": "now"}
    code, _, err = run(capsys, "loop", "run", "--interval", "-1", "-p", empty)
    assert code == 2 and "--interval" in err


def test_a_step_while_another_controller_holds_the_loop(
    empty: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = Project.open(Path(empty))
    try:
        assert Lease(
            project.store, "loop:stream_model", "elsewhere", timedelta(minutes=5)
        ).acquire()
    finally:
        project.close()
    code, out, _ = run(capsys, "loop", "step", "--now", iso(T0), "-p", empty)
    assert code == 0 and "held by elsewhere" in out
    code, out, _ = run(capsys, "loop", "step", "--now", iso(T0), "-p", empty, "--json")
    result = json.loads(out)
    assert code == 0 and not result["acted"] and result["events"] == []
    code, out, _ = run(capsys, "loop", "status", "-p", empty)
    assert "lease: held by elsewhere" in out  # the refused step did not free someone else's lease


@pytest.fixture
def sigterm_after_first_step(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Thread]:
    """SIGTERM to this process once the loop has stepped (its handlers are in place by then);
    a run that ignores it fails after 100 steps instead of hanging."""
    stepped = threading.Event()
    calls = 0
    real_step = Controller.step

    def step(self: Controller, now: datetime | None = None, **kw: Any) -> StepResult:
        nonlocal calls
        calls += 1
        if calls > 100:
            raise RuntimeError("`loop run` did not stop on SIGTERM")
        result = real_step(self, now, **kw)
        stepped.set()
        return result

    def kill() -> None:
        if stepped.wait(timeout=60):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Controller, "step", step)
    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    yield thread
    thread.join(timeout=5)


@pytest.mark.timeout(120)
def test_run_stops_cleanly_on_sigterm(
    stream: str, capsys: pytest.CaptureFixture[str], sigterm_after_first_step: threading.Thread
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    code, out, err = run(capsys, "loop", "run", "--interval", "0.05", "-p", stream, "--json")
    assert code == 0 and "SIGTERM: stopping" in err and err.rstrip().endswith("stopped")
    first = json.loads(out.splitlines()[0])  # one JSON line per step that did something
    assert kinds(first["events"]) == ["triggered", "trained", "gate_passed", "promoted"]
    assert signal.getsignal(signal.SIGTERM) is before
    code, out, _ = run(capsys, "loop", "status", "-p", stream, "--json")
    assert json.loads(out)["lease"] is None  # released when the run ended
