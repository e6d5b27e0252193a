"""What the loop reads about the world before it acts: its triggers (schedule, new data, what
its monitoring of the champion found, alerts, by hand), the champion's monitoring (which raises
the alerts, and rolls back a champion failing too often), and the quarantine rate that pauses
retraining.

Every trigger is judged at every step, and each says where it stands (:class:`TriggerState`):
a loop that does nothing must be able to say why."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from loopml.errors import LoopmlError
from loopml.features import to_micros
from loopml.spec import LoopSpec, MonitoringSpec, format_duration
from loopml.storage import tables as t

if TYPE_CHECKING:
    from loopml._project import Project
    from loopml.monitoring import MonitoringReport

log = logging.getLogger("loopml.loop")

BY = "loop"
NEW_ROWS_SHARE = 0.1  # new_rows: auto retrains once new rows are a tenth of the champion's
SIGNAL_NAMES = {
    "decay": "decay",
    "concept_drift": "concept drift",
    "covariate_shift": "covariate shift",
    "label_shift": "label shift",
}


@dataclass
class TriggerState:
    """One trigger at one step: whether its condition holds, and where it stands in words."""

    kind: str
    fired: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "fired": self.fired, "detail": self.detail, **self.numbers}


class Signals:
    """The loop's view of its project's model, data and monitoring."""

    def __init__(self, project: Project, spec: LoopSpec, name: str) -> None:
        self.project = project
        self.spec = spec
        self.name = name

    def triggers(self, now: datetime, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The triggers that fire at ``now`` (what :meth:`check` found due)."""
        return self.check(now, data)[0]

    def check(
        self, now: datetime, data: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[TriggerState]]:
        """The triggers that fire at ``now``, and where every trigger stands."""
        spec = self.spec.triggers
        last = data.get("cycle_started_at")
        last_at = datetime.fromisoformat(last) if last else None
        fired: list[dict[str, Any]] = []
        states: list[TriggerState] = []
        manual = data.get("manual")
        if manual:
            fired.append({"kind": "manual", **manual})
            states.append(
                TriggerState("manual", True, f"asked by {manual.get('by')}: {manual.get('reason')}")
            )
        else:
            states.append(TriggerState("manual", False, "none asked (loopml loop trigger)"))
        if not self.has_champion():
            source = self.event_source()
            if self.has_data():
                states.append(TriggerState("no_champion", True, "no champion yet"))
                fired = fired or [{"kind": "no_champion"}]
            else:
                where = f"the event source {source!r}" if source else "the event source"
                states.append(
                    TriggerState(
                        "no_champion",
                        False,
                        f"no champion yet; the first cycle starts once {where} has data",
                    )
                )
        else:
            horizon = last_at or datetime.min.replace(tzinfo=now.tzinfo)
            for state, found in (
                self._schedule(now, last_at),
                self._new_data(now, last_at),
                self._monitoring(data, horizon),
                self._alerts(now, horizon),
            ):
                states.append(state)
                fired.extend(found)
        interval = format_duration(spec.min_interval)
        if last_at is not None and now - last_at < spec.min_interval:
            nxt = last_at + spec.min_interval
            states.append(
                TriggerState(
                    "min_interval",
                    False,
                    f"{interval} after the last cycle began ({last_at:%Y-%m-%d %H:%M}): the "
                    f"next may start at {nxt:%Y-%m-%d %H:%M}"
                    + ("" if manual else " (a trigger by hand does not wait)"),
                    {"next": nxt.isoformat()},
                )
            )
            return (fired if manual else []), states
        states.append(
            TriggerState(
                "min_interval",
                False,
                f"{interval}: "
                + (
                    f"passed since the last cycle began ({last_at:%Y-%m-%d %H:%M})"
                    if last_at is not None
                    else "no cycle began yet"
                ),
            )
        )
        return fired, states

    def _schedule(
        self, now: datetime, last_at: datetime | None
    ) -> tuple[TriggerState, list[dict[str, Any]]]:
        every = self.spec.triggers.schedule
        if every is None:
            return TriggerState("schedule", False, "off (loop.triggers.schedule)"), []
        since = last_at or self.champion_created()
        text = format_duration(every)
        if since is None or now - since >= every:
            return (
                TriggerState("schedule", True, f"every {text}: due"),
                [{"kind": "schedule", "every": text}],
            )
        return (
            TriggerState(
                "schedule",
                False,
                f"every {text}: next at {since + every:%Y-%m-%d %H:%M}",
                {"next": (since + every).isoformat()},
            ),
            [],
        )

    def _new_data(
        self, now: datetime, last_at: datetime | None
    ) -> tuple[TriggerState, list[dict[str, Any]]]:
        setting = self.spec.triggers.new_rows
        if setting is None:
            return TriggerState("new_data", False, "off (loop.triggers.new_rows: null)"), []
        limit, why = self.new_rows_limit()
        since = self.new_rows_since(last_at)
        n = self.new_rows(now, since)
        after = ""
        if since is not None:
            whose = "the last cycle's start" if since == last_at else "the champion's data"
            after = f" after {whose} ({since:%Y-%m-%d %H:%M})"
        detail = f"{n:,} new rows{after}; it fires at {limit:,} ({why})"
        numbers = {"rows": n, "limit": limit, "why": why}
        if n >= limit:
            return TriggerState("new_data", True, detail, numbers), [
                {"kind": "new_data", **numbers}
            ]
        return TriggerState("new_data", False, detail, numbers), []

    def new_rows_limit(self) -> tuple[int, str]:
        """How many new rows fire the new-data trigger, and why that many."""
        setting = self.spec.triggers.new_rows
        if isinstance(setting, int):
            return setting, "loop.triggers.new_rows"
        floor = self.spec.retrain.min_rows
        rows = self.project.registry.get(self.name, "champion").lineage.get("rows") or {}
        seen = sum(int(v) for v in rows.values())
        share = math.ceil(seen * NEW_ROWS_SHARE)
        return max(floor, share), (
            f"auto: a tenth of the {seen:,} rows the champion was trained and tested on, at "
            f"least loop.retrain.min_rows ({floor:,})"
        )

    def _monitoring(
        self, data: dict[str, Any], horizon: datetime
    ) -> tuple[TriggerState, list[dict[str, Any]]]:
        wanted = list(self.spec.triggers.monitoring)
        if not wanted:
            return TriggerState("monitoring", False, "off (loop.triggers.monitoring: [])"), []
        names = ", ".join(SIGNAL_NAMES[w] for w in wanted)
        if self.spec.monitor_every is None:
            return (
                TriggerState(
                    "monitoring",
                    False,
                    f"{names}: never judged (loop.monitor_every is null: the loop does not "
                    "monitor the champion)",
                ),
                [],
            )
        judged = data.get("monitor")
        if not judged:
            return (
                TriggerState(
                    "monitoring",
                    False,
                    f"{names}: not judged yet (the loop monitors the champion every "
                    f"{format_duration(self.spec.monitor_every)})",
                ),
                [],
            )
        found = []
        for signal in wanted:
            seen = (judged.get("seen") or {}).get(signal)
            if seen and datetime.fromisoformat(seen["end"]) > horizon:
                found.append({"kind": "monitoring", "signal": signal, **seen})
        if found:
            text = "; ".join(
                f"{SIGNAL_NAMES[f['signal']]} in the window ending {f['end'][:16]}: {f['detail']}"
                for f in found
            )
            return TriggerState("monitoring", True, text, {"signals": wanted}), found
        return (
            TriggerState(
                "monitoring",
                False,
                f"{names}: not seen since the last cycle; {judged.get('summary', '')}",
                {"signals": wanted, "judged_at": judged.get("at")},
            ),
            [],
        )

    def _alerts(
        self, now: datetime, horizon: datetime
    ) -> tuple[TriggerState, list[dict[str, Any]]]:
        rules = self.spec.triggers.alerts
        if not rules:
            return TriggerState("alerts", False, "none named (loop.triggers.alerts)"), []
        found = [
            {"kind": "alert", "rule": a.rule, "alert": a.id, "metric": a.metric, "value": a.value}
            for a in self.project.monitoring.alerts.list(status="firing", limit=None)
            if a.rule in rules and a.last_at > horizon and a.last_at <= now
        ]
        named = ", ".join(rules)
        if found:
            return TriggerState("alerts", True, f"{named}: firing"), found
        return TriggerState("alerts", False, f"{named}: none firing since the last cycle"), []

    def monitor(self, now: datetime, data: dict[str, Any]) -> dict[str, Any]:
        """Judge the champion's windows up to ``now`` (raising alerts); roll a champion back
        when its answers fail too often."""
        mon = self.project.monitoring
        champion = self.champion_version()
        since_s = data.get("champion_since") or data.get("watching_since")
        since = datetime.fromisoformat(since_s) if since_s else None
        if since is not None:
            since = since.replace(hour=0, minute=0, second=0, microsecond=0)
            # Only the recent windows: those not judged yet and the sliding window behind them.
            # Whole windows after the promotion keep the windows' boundaries where they were.
            choice = mon.window_choice(version=champion)
            if choice is not None:
                back = now - choice.sliding - 2 * choice.window - since
                if back > timedelta(0):
                    since += (back // choice.window) * choice.window
        try:
            report = mon.report(version=champion, since=since, until=now)
        except LoopmlError as exc:
            log.warning("monitoring the champion failed: %s", exc)
            return {}
        if not report.rows:
            after = f" since {since:%Y-%m-%d %H:%M}" if since is not None else ""
            return {
                "judged": {
                    "at": now.isoformat(),
                    "windows": 0,
                    "seen": {},
                    "summary": f"no prediction of version {champion} logged{after}",
                }
            }
        judged = judgement(report, self.project.spec.monitoring)
        errors = report.current.metrics.current.get("error_rate") if report.current else None
        if errors is not None and errors > self.spec.max_error_rate:
            aliases_moved = self.project.registry.history(self.name, "champion")
            if len(aliases_moved) > 1:
                move = self.project.models.rollback(
                    by=BY,
                    reason=f"error rate {errors:.1%} above {self.spec.max_error_rate:.1%}",
                )
                return {
                    "rolled_back": {
                        "version": move.from_version,
                        "to": move.to_version,
                        "reason": f"error rate {errors:.1%} above the limit "
                        f"{self.spec.max_error_rate:.1%}",
                    }
                }
        return {"judged": judged}

    def quarantine_rate(self, now: datetime) -> float | None:
        source = self.event_source()
        lo = now - self.spec.quarantine.window
        with self.project.store.read() as conn:
            rows = conn.execute(
                select(t.batches.c.rows_read, t.batches.c.rows_quarantined).where(
                    and_(
                        t.batches.c.status == "committed",
                        t.batches.c.committed_at >= lo,
                        t.batches.c.committed_at <= now,
                        *([t.batches.c.source == source] if source else []),
                    )
                )
            ).all()
        read = sum(int(r[0] or 0) for r in rows)
        if read == 0:
            return None
        return sum(int(r[1] or 0) for r in rows) / read

    def quarantine_alert(self, rate: float, now: datetime) -> None:
        from loopml.monitoring import Alerts

        spec = MonitoringSpec.model_validate(
            {
                "alerts": {
                    "loop_quarantine": {
                        "metric": "quarantine_rate",
                        "threshold": self.spec.quarantine.max_rate,
                        "op": ">",
                        "severity": "critical",
                        "sinks": ["log"],
                    }
                }
            }
        )
        store: Any = self.project.store  # a MetadataStore, structurally
        alerts = Alerts(store, spec, root=self.project.root, model=self.name)
        alerts.evaluate({"current": {"quarantine_rate": rate}}, at=now, details={"source": "loop"})

    def new_rows_since(self, last_at: datetime | None) -> datetime | None:
        """New rows are those after the champion's data and after the last cycle's start: a
        cycle whose challenger was refused has used the rows before it."""
        end = self.project.registry.get(self.name, "champion").lineage.get("data_end")
        moments = [m for m in (datetime.fromisoformat(end) if end else None, last_at) if m]
        return max(moments) if moments else None

    def new_rows(self, now: datetime, since: datetime | None = None) -> int:
        """Accepted rows of the event source after ``since`` (default: the champion's data),
        up to ``now``."""
        if since is None:
            end = self.project.registry.get(self.name, "champion").lineage.get("data_end")
            since = datetime.fromisoformat(end) if end else None
        source = self.event_source()
        if source is None:
            return 0
        time_col = self.project.spec.sources[source].timestamp
        if time_col is None:
            return 0
        kind = self.project.data.query(f'SELECT typeof("{time_col}") AS t FROM "{source}" LIMIT 1')
        micros = f'epoch_us("{time_col}")'
        if kind.num_rows and kind.to_pylist()[0]["t"] == "TIMESTAMPTZ_NS":
            # DuckDB's epoch_us has no nanosecond-with-time-zone overload; the cast to
            # microseconds keeps the instant (no time zone is applied between two instants).
            micros = f'epoch_us(CAST("{time_col}" AS TIMESTAMPTZ))'
        where = [f"{micros} <= {to_micros(now)}"]
        if since is not None:
            where.append(f"{micros} > {to_micros(since)}")
        got = self.project.data.query(
            f'SELECT count(*) AS n FROM "{source}" WHERE ' + " AND ".join(where)
        )
        return int(got.to_pylist()[0]["n"])

    def event_source(self) -> str | None:
        f = self.project.spec.features
        return f.event.source if f is not None else None

    def champion_version(self) -> int | None:
        return self.project.registry.aliases(self.name).get("champion")

    def champion_created(self) -> datetime | None:
        mv = self.project.registry.get(self.name, "champion")
        end = mv.lineage.get("data_end")
        return datetime.fromisoformat(end) if end else None

    def has_model(self) -> bool:
        try:
            return any(m.name == self.name for m in self.project.registry.models())
        except LoopmlError:
            return False

    def has_champion(self) -> bool:
        return self.has_model() and self.champion_version() is not None

    def has_data(self) -> bool:
        source = self.event_source()
        return source is not None and any(
            b.source == source for b in self.project.data.lake.batches()
        )


def judgement(report: MonitoringReport, spec: MonitoringSpec) -> dict[str, Any]:
    """What one monitoring report of the champion found, for the loop's triggers: the last
    window judged, and for each signal the latest window that showed it."""
    seen: dict[str, dict[str, Any]] = {}
    timeline = report.timeline or []
    for item in timeline:
        shift = set(item.shift.kinds) | set(item.sliding.shift)
        decay = item.decay
        window = {"start": item.start, "end": item.end}
        if decay.decayed:
            seen["decay"] = {
                **window,
                "detail": f"{decay.metric} {_num(decay.value)} against "
                f"{_num(decay.reference)} (drop {_num(decay.drop)}, limit "
                f"{_num(decay.limit)}) on {item.labelled:,} labels",
            }
        for kind, signal in (
            ("concept", "concept_drift"),
            ("covariate", "covariate_shift"),
            ("label", "label_shift"),
        ):
            if kind in shift:
                seen[signal] = {**window, "detail": f"{SIGNAL_NAMES[signal]} flagged"}
    last = timeline[-1] if timeline else None
    labelled = last.labelled if last is not None else 0
    need = spec.performance.min_labels
    if last is not None and last.decay.drop is not None:
        perf = (
            f"{last.decay.metric} {_num(last.decay.value)} against "
            f"{_num(last.decay.reference)} on {labelled:,} labels"
        )
    else:
        perf = (
            f"{labelled:,} labels, fewer than the {need:,} that decay is judged on "
            "(monitoring.performance.min_labels)"
            if labelled < need
            else f"{labelled:,} labels"
        )
    end = (last.end if last is not None else "")[:16].replace("T", " ")
    return {
        "at": report.generated_at,
        "windows": len(timeline),
        "seen": seen,
        "summary": f"last window judged ends {end}: {perf}",
    }


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
