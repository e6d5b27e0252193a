"""Alerts: the rules of ``loopml.yaml`` judged on each evaluation of the monitored metrics.

A rule fires when its condition holds for ``for`` evaluations in a row. While it keeps holding,
later evaluations fold into the one firing alert (``occurrences`` counts them) instead of making
new ones; the first evaluation where it no longer holds resolves the alert. Sinks hear of an
alert once, when it fires, and then hear nothing from the same rule for its ``cooldown``: an alert
that fires inside the cooldown is recorded with ``notified_at`` None and
``details["suppressed"] = "cooldown"``.

Every decision uses the evaluation time ``at``, never the wall clock, so replaying history gives
the same alerts. The rule's state (its run of consecutive evaluations, its last notification, its
open alert) lives in the ``alert_state`` table and changes in the same write transaction as the
alerts. Sinks are called after that transaction commits, so a slow webhook never holds the
metadata store's write lock; the price is at-most-once delivery should the process die in
between. A failing sink never raises out of :meth:`Alerts.evaluate`: the error is logged and
kept in ``details["sink_errors"]``.
"""

from __future__ import annotations

import builtins
import logging
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, RowMapping, or_, select, update

from loopml.errors import LoopmlError, NotFoundError, UsageError
from loopml.monitoring._sinks import Sink, default_sinks
from loopml.spec import AlertRule, MonitoringSpec
from loopml.storage import MetadataStore
from loopml.storage import tables as t

__all__ = ["Alert", "Alerts"]

logger = logging.getLogger("loopml.alerts")

FIRING = "firing"
RESOLVED = "resolved"
STATUSES = (FIRING, RESOLVED)

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
# Keys this module writes into ``details``; the caller's details never overwrite them.
_OWN_KEYS = (
    "op",
    "for",
    "consecutive",
    "sinks",
    "suppressed",
    "sink_errors",
    "resolved_by",
    "resolved_value",
    "reason",
)


@dataclass(frozen=True)
class Alert:
    """One alert: a rule that fired for a model, and what became of it.

    ``status`` is ``"firing"`` until the condition stops holding or someone resolves it
    (``"resolved"``, with ``resolved_at``). ``value`` is the latest value that held the condition,
    ``occurrences`` the evaluations folded into the alert, ``first_at``/``last_at`` the first and
    latest of them. ``notified_at`` is None when the cooldown suppressed the notification.
    """

    id: int
    model: str | None
    rule: str
    metric: str
    severity: str
    status: str
    value: float | None
    threshold: float
    window: str
    window_start: datetime | None
    window_end: datetime | None
    first_at: datetime
    last_at: datetime
    occurrences: int
    notified_at: datetime | None
    resolved_at: datetime | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready values (datetimes in ISO 8601)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        return out

    def describe(self) -> str:
        """One line for a person: which rule, on what, and how far past the threshold."""
        where = f" for model {self.model!r}" if self.model else ""
        op = self.details.get("op", "vs")
        value = "?" if self.value is None else f"{self.value:g}"
        return (
            f"alert {self.rule!r} {self.status}{where}: {self.metric} ({self.window} window) = "
            f"{value}, {op} {self.threshold:g} [{self.severity}]"
        )


class Alerts:
    """The alert rules of ``spec`` for one model (or, with ``model=None``, for the project).

    :meth:`evaluate` judges every rule on one evaluation's values, records what fired or
    resolved in the metadata store and notifies the rule's sinks. ``sinks`` replaces the sinks
    :func:`default_sinks` builds from ``spec``, by name.

    >>> import tempfile; from datetime import UTC, datetime, timedelta; from pathlib import Path
    >>> from loopml.spec import MonitoringSpec, SQLiteConfig
    >>> from loopml.storage import open_metadata
    >>> from loopml.monitoring._sinks import FileSink
    >>> root = Path(tempfile.mkdtemp())
    >>> spec = MonitoringSpec.model_validate(
    ...     {"alerts": {"errors": {"metric": "error_rate", "threshold": 0.05, "for": 2}}})
    >>> alerts = Alerts(open_metadata(SQLiteConfig(path="m.db"), root=root), spec, root=root,
    ...                 model="delay", sinks={"log": FileSink(root / "log.jsonl")})
    >>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
    >>> alerts.evaluate({"current": {"error_rate": 0.2}}, at=t0)
    []
    >>> [(a.rule, a.status) for a in alerts.evaluate({"current": {"error_rate": 0.3}},
    ...                                              at=t0 + timedelta(hours=1))]
    [('errors', 'firing')]
    >>> [a.status for a in alerts.evaluate({"current": {"error_rate": 0.0}},
    ...                                    at=t0 + timedelta(hours=2))]
    ['resolved']
    """

    def __init__(
        self,
        store: MetadataStore,
        spec: MonitoringSpec,
        *,
        root: Path,
        model: str | None = None,
        sinks: Mapping[str, Sink] | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.root = Path(root)
        self.model = model
        self.sinks: dict[str, Sink] = {**default_sinks(spec, root=self.root), **(sinks or {})}
        for name, rule in spec.alerts.items():
            _check_rule(name, rule, self.sinks)

    # ---------------------------------------------------------------------------- evaluation

    def evaluate(
        self,
        values: Mapping[str, Mapping[str, float | None]],
        *,
        at: datetime,
        window_start: datetime | None = None,
        window_end: datetime | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> builtins.list[Alert]:
        """Judge every rule on ``values`` (``{"current" | "sliding" | "cumulative": {metric:
        value}}``) evaluated at ``at``; return the alerts that fired, folded in or resolved.

        A rule whose metric is missing, None or not finite here is skipped: it neither fires nor
        breaks its run. ``details`` (JSON) is stored on the alerts this evaluation touches. The
        cooldown is measured from the rule's last notification in either direction of time, so
        an evaluation earlier than the last one (a replay) is judged like any other.
        """
        _check_time(at, "at")
        _check_time(window_start, "window_start")
        _check_time(window_end, "window_end")
        extra = _plain(dict(details or {}), "details")
        judged: builtins.list[tuple[str, AlertRule, float]] = []
        for name, rule in self.spec.alerts.items():
            value = _number(values.get(rule.window, {}).get(rule.metric), name, rule)
            if value is not None:
                judged.append((name, rule, value))
        if not judged:
            return []
        touched: builtins.list[int] = []
        notify: dict[int, AlertRule] = {}
        with self.store.write() as conn:
            states = {
                row["rule"]: dict(row)
                for row in conn.execute(
                    select(t.alert_state).where(t.alert_state.c.model == self._key)
                ).mappings()
            }
            for name, rule, value in judged:
                judgement = _Judgement(
                    conn=conn,
                    model=self.model,
                    name=name,
                    rule=rule,
                    value=value,
                    state=states.get(name),
                    at=at,
                    window_start=window_start,
                    window_end=window_end,
                    extra=extra,
                )
                alert_id, notified = judgement.apply()
                if alert_id is not None:
                    touched.append(alert_id)
                    if notified:
                        notify[alert_id] = rule
            recorded = _fetch(conn, touched)
        errors = {
            alert_id: found
            for alert_id, rule in notify.items()
            if (found := self._send(recorded[alert_id], rule))
        }
        if errors:
            recorded.update(self._record_sink_errors(errors))
        return [recorded[alert_id] for alert_id in touched]

    def _send(self, alert: Alert, rule: AlertRule) -> dict[str, str]:
        errors: dict[str, str] = {}
        for name in rule.sinks:
            try:
                self.sinks[name].send(alert)
            except Exception as exc:  # noqa: BLE001 - a sink must never break the monitor
                message = exc.message if isinstance(exc, LoopmlError) else str(exc)
                errors[name] = f"{type(exc).__name__}: {message}"
                logger.error("alert %s: the %s sink failed: %s", alert.id, name, message)
        return errors

    def _record_sink_errors(self, errors: Mapping[int, dict[str, str]]) -> dict[int, Alert]:
        with self.store.write() as conn:
            current = _fetch(conn, builtins.list(errors))
            for alert_id, found in errors.items():
                merged = {**current[alert_id].details, "sink_errors": found}
                conn.execute(
                    update(t.alerts).where(t.alerts.c.id == alert_id).values(details=merged)
                )
            return _fetch(conn, builtins.list(errors))

    # ------------------------------------------------------------------------------- reading

    def list(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        since: datetime | None = None,
        limit: int | None = 100,
    ) -> builtins.list[Alert]:
        """Alerts newest first: this model's, or every model's when the instance has none.

        ``since`` keeps alerts that held or were resolved at or after that time.
        """
        if status is not None and status not in STATUSES:
            raise UsageError(
                f"unknown alert status {status!r}: use one of {', '.join(STATUSES)}",
                details={"status": status},
            )
        if limit is not None and limit < 1:
            raise UsageError(f"limit must be at least 1, not {limit}", details={"limit": limit})
        _check_time(since, "since")
        query = select(t.alerts).order_by(t.alerts.c.id.desc())
        if self.model is not None:
            query = query.where(t.alerts.c.model == self.model)
        if status is not None:
            query = query.where(t.alerts.c.status == status)
        if rule is not None:
            query = query.where(t.alerts.c.rule == rule)
        if since is not None:
            query = query.where(or_(t.alerts.c.last_at >= since, t.alerts.c.resolved_at >= since))
        if limit is not None:
            query = query.limit(limit)
        with self.store.read() as conn:
            return [_alert(row) for row in conn.execute(query).mappings()]

    def active(self) -> builtins.list[Alert]:
        """The firing alerts, newest first."""
        return self.list(status=FIRING, limit=None)

    def get(self, alert_id: int) -> Alert:
        """One alert by id; :class:`~loopml.errors.NotFoundError` if there is none."""
        with self.store.read() as conn:
            row = _row(conn, alert_id)
        if row is None:
            raise _not_found(alert_id)
        return _alert(row)

    # ------------------------------------------------------------------------------- by hand

    def resolve(
        self, alert_id: int, *, by: str, reason: str = "", at: datetime | None = None
    ) -> Alert:
        """Resolve a firing alert by hand (``at`` defaults to now); resolving a resolved alert
        changes nothing. The rule's run starts again, so it fires again only after ``for`` more
        evaluations where its condition holds (and notifies only outside the cooldown)."""
        if not isinstance(by, str) or not by.strip():
            raise UsageError(f"by must name who resolves the alert, not {by!r}", details={"by": by})
        _check_time(at, "at")
        when = at if at is not None else datetime.now(UTC)
        with self.store.write() as conn:
            row = _row(conn, alert_id)
            if row is None:
                raise _not_found(alert_id)
            if row["status"] == FIRING:
                details = {**row["details"], "resolved_by": by, "reason": reason}
                conn.execute(
                    update(t.alerts)
                    .where(t.alerts.c.id == alert_id)
                    .values(status=RESOLVED, resolved_at=when, details=details)
                )
                conn.execute(
                    update(t.alert_state)
                    .where(t.alert_state.c.rule == row["rule"])
                    .where(t.alert_state.c.model == (row["model"] or ""))
                    .where(t.alert_state.c.open_alert_id == alert_id)
                    .values(consecutive=0, open_alert_id=None)
                )
                row = _row(conn, alert_id)
                assert row is not None
        return _alert(row)

    @property
    def _key(self) -> str:
        # alert_state's primary key cannot hold NULL: "" stands for the project-wide rules.
        return self.model or ""


@dataclass
class _Judgement:
    """One rule judged on one value, recorded inside the evaluation's write transaction."""

    conn: Connection
    model: str | None
    name: str
    rule: AlertRule
    value: float
    state: Mapping[str, Any] | None
    at: datetime
    window_start: datetime | None
    window_end: datetime | None
    extra: dict[str, Any]

    def apply(self) -> tuple[int | None, bool]:
        """Record the judgement; return the alert touched (if any) and whether to notify."""
        rule, at, value = self.rule, self.at, self.value
        state = self.state or {}
        holds = _OPS[rule.op](value, rule.threshold)
        consecutive = int(state.get("consecutive") or 0) + 1 if holds else 0
        last_notified: datetime | None = state.get("last_notified_at")
        open_row = None
        if state.get("open_alert_id") is not None:
            open_row = _row(self.conn, state["open_alert_id"])
            if open_row is not None and open_row["status"] != FIRING:
                open_row = None
        touched: int | None = None
        notify = False
        if holds and open_row is not None:
            touched = open_row["id"]
            self._fold(open_row)
        elif holds and consecutive >= rule.for_:
            quiet = last_notified is None or abs(at - last_notified) >= rule.cooldown
            touched = self._fire(consecutive, quiet)
            if quiet:
                last_notified, notify = at, True
        elif open_row is not None:
            touched = open_row["id"]
            self._resolve(open_row)
        row = {
            "consecutive": consecutive,
            "last_value": value,
            "last_at": at,
            "last_notified_at": last_notified,
            "open_alert_id": touched if holds else None,
        }
        key = (t.alert_state.c.rule == self.name) & (t.alert_state.c.model == (self.model or ""))
        if self.state is None:
            self.conn.execute(
                t.alert_state.insert().values(rule=self.name, model=self.model or "", **row)
            )
        else:
            self.conn.execute(update(t.alert_state).where(key).values(**row))
        return touched, notify

    def _fire(self, consecutive: int, quiet: bool) -> int:
        rule = self.rule
        own: dict[str, Any] = {"op": rule.op, "for": rule.for_, "consecutive": consecutive}
        if quiet:
            own["sinks"] = builtins.list(rule.sinks)
        else:
            own["suppressed"] = "cooldown"
        result = self.conn.execute(
            t.alerts.insert().values(
                model=self.model,
                rule=self.name,
                metric=rule.metric,
                severity=rule.severity,
                status=FIRING,
                value=self.value,
                threshold=rule.threshold,
                window=rule.window,
                window_start=self.window_start,
                window_end=self.window_end,
                first_at=self.at,
                last_at=self.at,
                occurrences=1,
                notified_at=self.at if quiet else None,
                resolved_at=None,
                details={**self.extra, **own},
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def _fold(self, row: RowMapping) -> None:
        old = dict(row["details"])
        kept = {k: old[k] for k in _OWN_KEYS if k in old}
        values: dict[str, Any] = {
            "occurrences": row["occurrences"] + 1,
            # A replayed evaluation earlier than the alert's latest must not move it backwards.
            "last_at": max(row["last_at"], self.at),
            "value": self.value,
            "details": {**old, **self.extra, **kept},
        }
        if self.window_end is not None:
            values["window_end"] = self.window_end
        self.conn.execute(update(t.alerts).where(t.alerts.c.id == row["id"]).values(**values))

    def _resolve(self, row: RowMapping) -> None:
        details = {**row["details"], "resolved_by": "recovery", "resolved_value": self.value}
        self.conn.execute(
            update(t.alerts)
            .where(t.alerts.c.id == row["id"])
            .values(status=RESOLVED, resolved_at=self.at, details=details)
        )


# ------------------------------------------------------------------------------------ helpers


def _row(conn: Connection, alert_id: int) -> RowMapping | None:
    return conn.execute(select(t.alerts).where(t.alerts.c.id == alert_id)).mappings().first()


def _fetch(conn: Connection, ids: builtins.list[int]) -> dict[int, Alert]:
    if not ids:
        return {}
    rows = conn.execute(select(t.alerts).where(t.alerts.c.id.in_(ids))).mappings()
    return {row["id"]: _alert(row) for row in rows}


def _alert(row: RowMapping) -> Alert:
    values = dict(row)
    values["details"] = dict(values["details"] or {})
    return Alert(**values)


def _not_found(alert_id: int) -> NotFoundError:
    return NotFoundError(
        f"no alert with id {alert_id}: Alerts.list() (or `loopml monitor --json`) shows the "
        f"recorded ones",
        details={"alert_id": alert_id},
    )


def _check_rule(name: str, rule: AlertRule, sinks: Mapping[str, Sink]) -> None:
    where = f"monitoring.alerts.{name}"
    if not name or len(name) > 64:
        raise UsageError(
            f"{where}: an alert rule's name must have 1 to 64 characters", details={"rule": name}
        )
    if len(rule.metric) > 200:
        raise UsageError(f"{where}.metric is longer than 200 characters", details={"rule": name})
    for sink in rule.sinks:
        if sink not in sinks:
            hint = " (set monitoring.sinks.webhook.url)" if sink == "webhook" else ""
            raise UsageError(
                f"{where} sends to the {sink} sink, which is not configured{hint}",
                details={"rule": name, "sink": sink},
            )


def _check_time(value: datetime | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise UsageError(
            f"{what} must be a timezone-aware datetime (UTC), not {value!r}",
            details={what: repr(value)},
        )


def _number(value: Any, name: str, rule: AlertRule) -> float | None:
    """The metric as a float, or None when it was not measured (None, NaN or infinite)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"alert rule {name!r}: {rule.metric} in the {rule.window} window is {value!r}, not "
            f"a number",
            details={"rule": name, "metric": rule.metric, "window": rule.window},
        ) from exc
    return number if math.isfinite(number) else None


def _plain(value: Any, path: str) -> Any:
    """``value`` as JSON: NaN and infinities become None, numpy scalars and datetimes plain."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, builtins.list | tuple):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return _plain(item(), path)
    raise UsageError(
        f"alert {path} is not JSON: {type(value).__name__} {value!r}", details={"key": path}
    )
