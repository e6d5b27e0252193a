"""Alert rules on a real SQLite metadata store: runs, deduplication, cooldown, recovery, sinks."""

from __future__ import annotations

import doctest
import json
import logging
import math
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopml.errors import NotFoundError, UsageError
from loopml.monitoring import _alerts, _sinks
from loopml.monitoring._alerts import Alert, Alerts
from loopml.monitoring._sinks import LogSink
from loopml.spec import MonitoringSpec, PostgresConfig, SQLiteConfig
from loopml.storage import SqlMetadataStore, open_metadata

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


class Recorder:
    """A sink that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    s = open_metadata(SQLiteConfig(path="m.db"), root=tmp_path)
    yield s
    s.close()


def spec(rules: dict[str, dict[str, Any]], **extra: Any) -> MonitoringSpec:
    return MonitoringSpec.model_validate({"alerts": rules, **extra})


def alerts_on(
    store: SqlMetadataStore,
    root: Path,
    rules: dict[str, dict[str, Any]],
    *,
    model: str | None = "delay",
    **extra: Any,
) -> tuple[Alerts, Recorder]:
    recorder = Recorder()
    return Alerts(store, spec(rules, **extra), root=root, model=model, sinks={"log": recorder}), (
        recorder
    )


def errors(value: float | None, window: str = "current") -> dict[str, dict[str, float | None]]:
    return {window: {"error_rate": value}}


ERRORS = {"metric": "error_rate", "threshold": 0.1}


def test_fires_only_after_for_consecutive_evaluations(
    store: SqlMetadataStore, tmp_path: Path
) -> None:
    alerts, recorder = alerts_on(store, tmp_path, {"errors": {**ERRORS, "for": 3}})
    run = [0.2, 0.2, 0.0, 0.2, 0.2]  # the dip breaks the run
    for i, value in enumerate(run):
        assert alerts.evaluate(errors(value), at=T0 + i * HOUR) == []
    (fired,) = alerts.evaluate(errors(0.3), at=T0 + 5 * HOUR)
    assert (fired.rule, fired.status, fired.value, fired.occurrences) == (
        "errors",
        "firing",
        0.3,
        1,
    )
    assert fired.first_at == fired.notified_at == T0 + 5 * HOUR
    assert (fired.model, fired.metric, fired.threshold, fired.window) == (
        "delay",
        "error_rate",
        0.1,
        "current",
    )
    assert fired.details["consecutive"] == 3 and fired.details["op"] == ">"
    assert recorder.sent == [fired]


def test_the_run_survives_a_new_instance(store: SqlMetadataStore, tmp_path: Path) -> None:
    rules = {"errors": {**ERRORS, "for": 2}}
    first, _ = alerts_on(store, tmp_path, rules)
    assert first.evaluate(errors(0.2), at=T0) == []
    second, recorder = alerts_on(store, tmp_path, rules)
    assert [a.status for a in second.evaluate(errors(0.2), at=T0 + HOUR)] == ["firing"]
    assert len(recorder.sent) == 1


def test_a_holding_condition_makes_one_alert_and_one_notification(
    store: SqlMetadataStore, tmp_path: Path
) -> None:
    alerts, recorder = alerts_on(store, tmp_path, {"errors": ERRORS})
    ids = set()
    for i in range(5):
        (alert,) = alerts.evaluate(
            errors(0.2 + i / 100),
            at=T0 + i * HOUR,
            window_start=T0 + (i - 1) * HOUR,
            window_end=T0 + i * HOUR,
            details={"rows": 100 + i},
        )
        ids.add(alert.id)
    (alert,) = alerts.list()
    assert ids == {alert.id}
    assert alert.occurrences == 5 and alert.status == "firing"
    assert (alert.first_at, alert.last_at) == (T0, T0 + 4 * HOUR)
    assert alert.value == pytest.approx(0.24)
    assert (alert.window_start, alert.window_end) == (T0 - HOUR, T0 + 4 * HOUR)
    assert alert.details["rows"] == 104 and alert.details["consecutive"] == 1
    assert alert.notified_at == T0
    assert len(recorder.sent) == 1


def test_recovery_resolves_the_alert(store: SqlMetadataStore, tmp_path: Path) -> None:
    alerts, recorder = alerts_on(store, tmp_path, {"errors": ERRORS})
    (fired,) = alerts.evaluate(errors(0.5), at=T0)
    (resolved,) = alerts.evaluate(errors(0.01), at=T0 + HOUR)
    assert resolved.id == fired.id
    assert (resolved.status, resolved.resolved_at) == ("resolved", T0 + HOUR)
    assert resolved.details["resolved_by"] == "recovery"
    assert resolved.details["resolved_value"] == 0.01
    assert resolved.value == 0.5 and resolved.last_at == T0
    assert alerts.active() == []
    assert alerts.evaluate(errors(0.0), at=T0 + 2 * HOUR) == []
    assert len(recorder.sent) == 1  # resolutions are recorded, not sent


def test_cooldown_suppresses_refiring_then_allows_it(
    store: SqlMetadataStore, tmp_path: Path
) -> None:
    alerts, recorder = alerts_on(store, tmp_path, {"errors": {**ERRORS, "cooldown": "6h"}})
    (first,) = alerts.evaluate(errors(0.5), at=T0)
    alerts.evaluate(errors(0.0), at=T0 + HOUR)
    (second,) = alerts.evaluate(errors(0.5), at=T0 + 2 * HOUR)
    assert second.id != first.id and second.status == "firing"
    assert second.notified_at is None and second.details["suppressed"] == "cooldown"
    assert recorder.sent == [first]
    alerts.evaluate(errors(0.0), at=T0 + 3 * HOUR)
    # Measured from the last notification (T0), not from the suppressed alert.
    (third,) = alerts.evaluate(errors(0.5), at=T0 + 6 * HOUR)
    assert third.notified_at == T0 + 6 * HOUR and "suppressed" not in third.details
    assert [a.id for a in recorder.sent] == [first.id, third.id]
    assert [a.notified_at is not None for a in alerts.list()] == [True, False, True]


def test_rules_on_different_windows(store: SqlMetadataStore, tmp_path: Path) -> None:
    rules = {
        "now": {**ERRORS, "window": "current"},
        "week": {**ERRORS, "window": "sliding", "severity": "critical"},
        "ever": {**ERRORS, "window": "cumulative"},
    }
    alerts, _ = alerts_on(store, tmp_path, rules)
    values = {
        "current": {"error_rate": 0.2},
        "sliding": {"error_rate": 0.05},
        "cumulative": {"error_rate": 0.01},
    }
    (fired,) = alerts.evaluate(values, at=T0)
    assert (fired.rule, fired.window, fired.value) == ("now", "current", 0.2)
    values["sliding"]["error_rate"] = 0.15
    fired_now = alerts.evaluate(values, at=T0 + HOUR)
    assert [(a.rule, a.window, a.severity) for a in fired_now] == [
        ("now", "current", "warning"),
        ("week", "sliding", "critical"),
    ]


@pytest.mark.parametrize(
    "missing",
    [{}, {"current": {}}, errors(None), errors(math.nan), errors(math.inf), errors(0.5, "sliding")],
)
def test_a_missing_metric_neither_fires_nor_breaks_the_run(
    store: SqlMetadataStore, tmp_path: Path, missing: dict[str, dict[str, float | None]]
) -> None:
    alerts, _ = alerts_on(store, tmp_path, {"errors": {**ERRORS, "for": 2}})
    assert alerts.evaluate(errors(0.5), at=T0) == []
    assert alerts.evaluate(missing, at=T0 + HOUR) == []
    (fired,) = alerts.evaluate(errors(0.5), at=T0 + 2 * HOUR)
    assert alerts.evaluate(missing, at=T0 + 3 * HOUR) == []  # nor resolves a firing alert
    assert [a.id for a in alerts.active()] == [fired.id]


@pytest.mark.parametrize(
    ("op", "fires_at"),
    [(">", [0.2]), (">=", [0.1, 0.2]), ("<", [0.0]), ("<=", [0.0, 0.1])],
)
def test_comparison_operators(
    store: SqlMetadataStore, tmp_path: Path, op: str, fires_at: list[float]
) -> None:
    fired = []
    for value in [0.0, 0.1, 0.2]:
        alerts, _ = alerts_on(store, tmp_path, {"errors": {**ERRORS, "op": op}}, model=f"m{value}")
        if alerts.evaluate(errors(value), at=T0):
            fired.append(value)
    assert fired == fires_at


def test_evaluations_out_of_order_do_not_break(store: SqlMetadataStore, tmp_path: Path) -> None:
    alerts, recorder = alerts_on(store, tmp_path, {"errors": {**ERRORS, "cooldown": "6h"}})
    (fired,) = alerts.evaluate(errors(0.5), at=T0 + 10 * HOUR)
    (folded,) = alerts.evaluate(errors(0.6), at=T0 + 2 * HOUR)
    assert folded.id == fired.id and folded.last_at == T0 + 10 * HOUR
    (resolved,) = alerts.evaluate(errors(0.0), at=T0)
    assert resolved.resolved_at == T0
    # Within the cooldown of the last notification, before it in time: still suppressed.
    (again,) = alerts.evaluate(errors(0.5), at=T0 + 5 * HOUR)
    assert again.details["suppressed"] == "cooldown"
    assert len(recorder.sent) == 1


def test_models_keep_their_own_alerts(store: SqlMetadataStore, tmp_path: Path) -> None:
    a, _ = alerts_on(store, tmp_path, {"errors": ERRORS}, model="a")
    b, _ = alerts_on(store, tmp_path, {"errors": ERRORS}, model="b")
    project, _ = alerts_on(store, tmp_path, {"errors": ERRORS}, model=None)
    a.evaluate(errors(0.5), at=T0)
    b.evaluate(errors(0.0), at=T0)
    project.evaluate(errors(0.5), at=T0)
    assert [x.model for x in a.active()] == ["a"]
    assert b.active() == []
    assert [x.model for x in project.list()] == [None, "a"]  # no model: every model's alerts
    (resolved,) = a.evaluate(errors(0.0), at=T0 + HOUR)
    assert resolved.model == "a"
    assert [x.status for x in project.active()] == ["firing"]


# ---------------------------------------------------------------------- list, resolve by hand


def test_list_active_and_resolve_by_hand(store: SqlMetadataStore, tmp_path: Path) -> None:
    rules = {
        "errors": {**ERRORS, "for": 2},
        "slow": {"metric": "latency.p99_ms", "threshold": 50},
    }
    alerts, recorder = alerts_on(store, tmp_path, rules)
    values = {"current": {"error_rate": 0.5, "latency.p99_ms": 80.0}}
    alerts.evaluate(values, at=T0)
    alerts.evaluate(values, at=T0 + HOUR)
    errs, slow = alerts.active()  # newest first
    assert (slow.rule, errs.rule) == ("slow", "errors")
    assert errs.id > slow.id

    resolved = alerts.resolve(errs.id, by="ana", reason="known outage", at=T0 + 90 * MINUTE)
    assert resolved.status == "resolved" and resolved.resolved_at == T0 + 90 * MINUTE
    assert resolved.details["resolved_by"] == "ana" and resolved.details["reason"] == "known outage"
    assert [a.id for a in alerts.active()] == [slow.id]
    assert [a.id for a in alerts.list(status="resolved")] == [errs.id]
    assert [a.id for a in alerts.list(rule="slow")] == [slow.id]
    assert len(alerts.list(limit=1)) == 1
    assert alerts.get(errs.id) == resolved
    assert alerts.resolve(errs.id, by="bob") == resolved  # already resolved: unchanged

    # The run starts again: the rule needs `for` more evaluations to fire a new alert.
    assert [a.rule for a in alerts.evaluate(values, at=T0 + 2 * HOUR)] == ["slow"]
    refired = [a for a in alerts.evaluate(values, at=T0 + 3 * HOUR) if a.rule == "errors"]
    assert [a.status for a in refired] == ["firing"] and refired[0].id != errs.id
    assert refired[0].details["suppressed"] == "cooldown"
    assert len(recorder.sent) == 2


def test_list_since(store: SqlMetadataStore, tmp_path: Path) -> None:
    alerts, _ = alerts_on(store, tmp_path, {"errors": ERRORS})
    alerts.evaluate(errors(0.5), at=T0)
    alerts.evaluate(errors(0.0), at=T0 + HOUR)
    (late,) = alerts.evaluate(errors(0.5), at=T0 + 5 * HOUR)
    assert [a.id for a in alerts.list(since=T0 + HOUR)] == [late.id, late.id - 1]
    assert [a.id for a in alerts.list(since=T0 + 2 * HOUR)] == [late.id]


def test_unknown_alert_id(store: SqlMetadataStore, tmp_path: Path) -> None:
    alerts, _ = alerts_on(store, tmp_path, {"errors": ERRORS})
    with pytest.raises(NotFoundError, match="12345") as info:
        alerts.resolve(12345, by="ana")
    assert info.value.details == {"alert_id": 12345}
    with pytest.raises(NotFoundError, match="12345"):
        alerts.get(12345)


def test_bad_input_is_a_usage_error(store: SqlMetadataStore, tmp_path: Path) -> None:
    alerts, _ = alerts_on(store, tmp_path, {"errors": ERRORS})
    with pytest.raises(UsageError, match="timezone-aware"):
        alerts.evaluate(errors(0.5), at=datetime(2024, 1, 1))
    with pytest.raises(UsageError, match="error_rate in the current window is 'high'"):
        alerts.evaluate({"current": {"error_rate": "high"}}, at=T0)  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="status"):
        alerts.list(status="open")
    with pytest.raises(UsageError, match="who resolves"):
        alerts.resolve(1, by=" ")
    with pytest.raises(UsageError, match="1 to 64"):
        alerts_on(store, tmp_path, {"x" * 65: ERRORS})


def test_details_are_stored_as_json(store: SqlMetadataStore, tmp_path: Path) -> None:
    alerts, _ = alerts_on(store, tmp_path, {"errors": ERRORS})
    details = {"p": np.float64(0.01), "bad": math.nan, "at": T0, "features": ("a", "b")}
    (alert,) = alerts.evaluate(errors(0.5), at=T0, details=details)
    assert {k: alert.details[k] for k in details} == {
        "p": 0.01,
        "bad": None,
        "at": T0.isoformat(),
        "features": ["a", "b"],
    }
    back = json.loads(json.dumps(alert.to_dict(), allow_nan=False))
    assert back["first_at"] == T0.isoformat() and back["resolved_at"] is None
    with pytest.raises(UsageError, match=r"details\.thing"):
        alerts.evaluate(errors(0.5), at=T0, details={"thing": object()})


# ----------------------------------------------------------------------------------- sinks


def test_log_sink_levels_follow_severity(
    store: SqlMetadataStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules = {
        "info": {**ERRORS, "severity": "info"},
        "warn": {**ERRORS, "severity": "warning"},
        "crit": {**ERRORS, "severity": "critical"},
    }
    alerts = Alerts(store, spec(rules), root=tmp_path, model="delay")
    with caplog.at_level(logging.INFO, logger="loopml.alerts"):
        alerts.evaluate(errors(0.5), at=T0)
    records = [r for r in caplog.records if r.name == "loopml.alerts"]
    assert [r.levelno for r in records] == [logging.INFO, logging.WARNING, logging.CRITICAL]
    assert "alert 'crit' firing for model 'delay': error_rate" in records[2].getMessage()
    assert records[2].alert["rule"] == "crit"  # type: ignore[attr-defined]


def test_file_sink_appends_json_lines(store: SqlMetadataStore, tmp_path: Path) -> None:
    rules = {
        "errors": {**ERRORS, "sinks": ["file"]},
        "slow": {"metric": "latency.p99_ms", "threshold": 50, "sinks": ["file", "log"]},
    }
    monitoring = spec(rules, sinks={"file": {"path": "out/alerts.jsonl"}})
    alerts = Alerts(store, monitoring, root=tmp_path, sinks={"log": Recorder()})
    fired = alerts.evaluate({"current": {"error_rate": 0.5, "latency.p99_ms": 70.0}}, at=T0)
    lines = (tmp_path / "out" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [a.to_dict() for a in fired]
    assert datetime.fromisoformat(json.loads(lines[0])["first_at"]) == T0


@dataclass
class Hook:
    url: str
    received: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, then 200


@pytest.fixture
def hook() -> Iterator[Hook]:
    hook = Hook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append((self.headers.get("Authorization"), json.loads(body)))
            self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield hook
    server.shutdown()
    server.server_close()
    thread.join()


def webhook_alerts(store: SqlMetadataStore, root: Path, url: str, **hook: Any) -> Alerts:
    rules = {"errors": {**ERRORS, "sinks": ["webhook", "log"]}}
    monitoring = spec(rules, sinks={"webhook": {"url": url, "timeout": "2s", **hook}})
    alerts = Alerts(store, monitoring, root=root, model="delay", sinks={"log": Recorder()})
    webhook = alerts.sinks["webhook"]
    assert isinstance(webhook, _sinks.WebhookSink)
    webhook.retry_delay = 0.0
    return alerts


def test_webhook_receives_the_alert_and_the_token(
    store: SqlMetadataStore, tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_TEST_HOOK_TOKEN", "s3cret")
    alerts = webhook_alerts(store, tmp_path, hook.url, token_env="LOOPML_TEST_HOOK_TOKEN")
    (fired,) = alerts.evaluate(errors(0.5), at=T0)
    assert hook.received == [("Bearer s3cret", fired.to_dict())]
    assert "sink_errors" not in fired.details
    alerts.evaluate(errors(0.6), at=T0 + HOUR)  # folded in: no second call
    assert len(hook.received) == 1


def test_webhook_retries_once_after_a_server_error(
    store: SqlMetadataStore, tmp_path: Path, hook: Hook
) -> None:
    hook.statuses.extend([503])
    (fired,) = webhook_alerts(store, tmp_path, hook.url).evaluate(errors(0.5), at=T0)
    assert [auth for auth, _ in hook.received] == [None, None]
    assert "sink_errors" not in fired.details


def test_webhook_refusal_is_recorded_not_retried(
    store: SqlMetadataStore, tmp_path: Path, hook: Hook
) -> None:
    hook.statuses.extend([401])
    alerts = webhook_alerts(store, tmp_path, hook.url)
    (fired,) = alerts.evaluate(errors(0.5), at=T0)
    assert len(hook.received) == 1
    assert "HTTP 401" in fired.details["sink_errors"]["webhook"]
    assert alerts.get(fired.id).details["sink_errors"] == fired.details["sink_errors"]


def test_webhook_to_a_closed_port_does_not_break_evaluate(
    store: SqlMetadataStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    alerts = webhook_alerts(store, tmp_path, f"http://127.0.0.1:{port}/hook")
    with caplog.at_level(logging.ERROR, logger="loopml.alerts"):
        (fired,) = alerts.evaluate(errors(0.5), at=T0)
    error = fired.details["sink_errors"]["webhook"]
    assert "ConnectError" in error and f"127.0.0.1:{port}" in error
    assert "webhook sink failed" in caplog.text
    (stored,) = alerts.list()
    assert stored == fired and stored.notified_at == T0
    recorder = alerts.sinks["log"]
    assert isinstance(recorder, Recorder) and len(recorder.sent) == 1  # the other sink still ran


def test_webhook_without_its_token_is_recorded(
    store: SqlMetadataStore, tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOPML_TEST_NO_TOKEN", raising=False)
    alerts = webhook_alerts(store, tmp_path, hook.url, token_env="LOOPML_TEST_NO_TOKEN")
    (fired,) = alerts.evaluate(errors(0.5), at=T0)
    assert "LOOPML_TEST_NO_TOKEN" in fired.details["sink_errors"]["webhook"]
    assert hook.received == []


def test_webhook_messages_hide_passwords() -> None:
    assert _sinks.redact("https://u:pw@example.com:8443/x?y=1") == (
        "https://u:***@example.com:8443/x?y=1"
    )


def test_log_sink_is_the_default(store: SqlMetadataStore, tmp_path: Path) -> None:
    alerts = Alerts(store, spec({"errors": ERRORS}), root=tmp_path)
    assert isinstance(alerts.sinks["log"], LogSink)
    assert "webhook" not in alerts.sinks


def test_doctests() -> None:
    result = doctest.testmod(_alerts)
    assert result.attempted > 0 and result.failed == 0


# -------------------------------------------------------------------------------- Postgres


@pytest.mark.postgres
def test_alerts_on_postgres(postgres_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = postgres_schema
    pg = open_metadata(PostgresConfig(url=url, schema=schema), root=tmp_path)  # type: ignore[call-arg]
    try:
        alerts, recorder = alerts_on(pg, tmp_path, {"errors": {**ERRORS, "for": 2}})
        assert alerts.evaluate(errors(0.5), at=T0) == []
        (fired,) = alerts.evaluate(errors(0.5), at=T0 + HOUR, details={"p": np.float32(0.5)})
        (folded,) = alerts.evaluate(errors(0.7), at=T0 + 2 * HOUR)
        assert folded.id == fired.id and folded.occurrences == 2 and folded.value == 0.7
        assert folded.first_at == T0 + HOUR and folded.details["p"] == 0.5
        (resolved,) = alerts.evaluate(errors(0.0), at=T0 + 3 * HOUR)
        assert resolved.status == "resolved" and alerts.active() == []
        assert [a.window for a in alerts.list(since=T0)] == ["current"]
        assert len(recorder.sent) == 1
    finally:
        pg.close()
