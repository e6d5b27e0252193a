"""What the loop reads about the world before it acts: its triggers (schedule, new data,
alerts, by hand), the champion's monitoring (which raises the alerts, and rolls back a champion
failing too often), and the quarantine rate that pauses retraining."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from loopml.errors import LoopmlError
from loopml.features import to_micros
from loopml.spec import LoopSpec, MonitoringSpec, format_duration
from loopml.storage import _tables as t

if TYPE_CHECKING:
    from loopml._project import Project

log = logging.getLogger("loopml.loop")

BY = "loop"


class Signals:
    """The loop's view of its project's model, data and monitoring."""

    def __init__(self, project: Project, spec: LoopSpec, name: str) -> None:
        self.project = project
        self.spec = spec
        self.name = name

    def triggers(self, now: datetime, data: dict[str, Any]) -> list[dict[str, Any]]:
        spec = self.spec.triggers
        last = data.get("cycle_started_at")
        last_at = datetime.fromisoformat(last) if last else None
        fired: list[dict[str, Any]] = []
        manual = data.get("manual")
        if manual:
            fired.append({"kind": "manual", **manual})
        if last_at is not None and now - last_at < spec.min_interval and not manual:
            return []
        if not self.has_champion():
            return fired or ([{"kind": "no_champion"}] if self.has_data() else [])
        if spec.schedule is not None:
            since = last_at or self.champion_created()
            if since is None or now - since >= spec.schedule:
                fired.append({"kind": "schedule", "every": format_duration(spec.schedule)})
        if spec.new_rows is not None:
            n = self.new_rows(now)
            if n >= spec.new_rows:
                fired.append({"kind": "new_data", "rows": n, "limit": spec.new_rows})
        if spec.alerts:
            horizon = last_at or datetime.min.replace(tzinfo=now.tzinfo)
            for a in self.project.monitoring.alerts.list(status="firing", limit=None):
                if a.rule in spec.alerts and a.last_at > horizon and a.last_at <= now:
                    fired.append(
                        {
                            "kind": "alert",
                            "rule": a.rule,
                            "alert": a.id,
                            "metric": a.metric,
                            "value": a.value,
                        }
                    )
        return fired

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
        if not report.get("rows"):
            return {}
        errors = (report.get("current", {}).get("metrics", {}).get("current") or {}).get(
            "error_rate"
        )
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
        return {}

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
        from loopml.monitoring._alerts import Alerts

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

    def new_rows(self, now: datetime) -> int:
        mv = self.project.registry.get(self.name, "champion")
        end = mv.lineage.get("data_end")
        source = self.event_source()
        if source is None:
            return 0
        time_col = self.project.spec.sources[source].timestamp
        if time_col is None:
            return 0
        where = [f'epoch_us("{time_col}") <= {to_micros(now)}']
        if end:
            where.append(f'epoch_us("{time_col}") > {to_micros(datetime.fromisoformat(end))}')
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
