"""The monitor's windows on a low-volume source (issue 16, item 10): with no window declared, it
is chosen from the log's rate so that a window holds enough predictions to be tested, the choice
and its reason are reported, and --window or monitoring.window override it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from loopml.cli import main
from loopml.monitoring._monitor import WINDOW_STEPS, choose_window
from loopml.spec import MonitoringSpec
from tests.unit.monitoring.conftest import PER_DAY, Trained, features_of

DAY_US = 86_400_000_000


def times(per_day: float, days: float) -> np.ndarray:
    n = int(per_day * days)
    return np.sort(np.random.default_rng(0).uniform(0, days * DAY_US, n)).astype(np.int64)


@pytest.mark.parametrize(
    ("per_day", "days", "window"),
    [(5000, 30, 1), (120, 60, 7), (20, 200, 14), (3, 400, 91), (0.5, 3000, 365), (0.1, 5000, 365)],
)
def test_the_default_window_holds_the_minimum_count_at_the_logs_rate(
    per_day: float, days: float, window: int
) -> None:
    spec = MonitoringSpec()
    target = max(spec.drift.min_rows, spec.performance.min_labels)
    choice = choose_window(spec, times(per_day, days))
    assert choice.window == timedelta(days=window) and choice.source == "data"
    assert choice.sliding >= choice.window
    expected = per_day * window
    if expected >= target:
        assert f"at least {target}" in choice.reason
        shorter = [w for w in WINDOW_STEPS if w < choice.window]
        assert all(per_day * w.days < target for w in shorter)  # the shortest that holds it
    else:
        assert "fewer than" in choice.reason and choice.window == WINDOW_STEPS[-1]
    assert "monitoring.window" in choice.reason


def test_a_declared_or_asked_window_wins() -> None:
    at = times(3, 400)
    declared = MonitoringSpec.model_validate({"window": "2d"})
    choice = choose_window(declared, at)
    assert (choice.window, choice.sliding, choice.source) == (
        timedelta(days=2),
        timedelta(days=7),
        "spec",
    )
    asked = choose_window(declared, at, timedelta(days=30))
    assert (asked.window, asked.sliding, asked.source) == (
        timedelta(days=30),
        timedelta(days=30),
        "option",
    )
    assert choose_window(MonitoringSpec(), times(100, 0.5)).window == timedelta(days=1)


def test_a_low_volume_log_is_judged_in_windows_that_hold_enough_rows(
    synth: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with synth.copy(tmp_path) as p:
        p.monitoring.record_batch(features_of(p, synth.traffic), id_prefix="w")
        report = p.monitoring.report(alerts=False)
        settings = report.settings
        assert settings is not None and report.timeline
        assert settings.source == "data" and settings.window == "13w"  # 91 days
        assert re.search(rf"{PER_DAY}(\.\d+)? predictions a day", settings.reason)
        min_rows = settings.drift.min_rows
        first = report.timeline[0]
        # a 1-day window held 3 rows: never tested; these hold enough to be
        assert first.rows >= min_rows
        assert all(score is not None for score in first.features.scores.values())
        root = str(p.root)
    code = main(["monitor", "-p", root])
    out = capsys.readouterr().out
    assert code == 0
    assert "windows of 13w" in out and "window chosen from the log" in out
    assert f"drift is tested from {min_rows}" in out
    code = main(["monitor", "--window", "7d", "--json", "-p", root])
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["window"] == "1w" and report["settings"]["source"] == "option"
    assert all(w["rows"] <= 7 * PER_DAY for w in report["timeline"])
