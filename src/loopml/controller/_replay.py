"""Replaying history through the loop: the events of each period are answered as live traffic
(under whatever rollout is active), the labels that became known in the period are sent as
feedback, and the controller steps at the period's end on the replay's clock. The demo, the
tests and backtests of a loop policy run on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from loopml.controller._controller import Controller, StepResult
from loopml.errors import UsageError
from loopml.features import to_micros
from loopml.rollout import BatchServer

if TYPE_CHECKING:
    from loopml._project import Project


@dataclass
class Period:
    start: datetime
    end: datetime
    rows: int
    answered: dict[int, int]
    shadowed: int
    labels: int
    step: StepResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "answered": {str(k): v for k, v in self.answered.items()},
            "shadowed": self.shadowed,
            "labels": self.labels,
            "phase": self.step.phase,
            "events": [e["kind"] for e in self.step.events],
        }


@dataclass
class ReplayResult:
    periods: list[Period] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for p in self.periods for e in p.step.events]


def replay(
    project: Project,
    table: pa.Table,
    *,
    start: datetime,
    until: datetime,
    every: timedelta = timedelta(days=1),
    controller: Controller | None = None,
    at: str = "_event_time",
    label_at: str = "_label_available_at",
    on_period: Callable[[Period], None] | None = None,
) -> ReplayResult:
    """Replay the events of ``table`` (complete feature rows, as ``features.build`` gives them)
    from ``start`` to ``until``, one period of ``every`` at a time."""
    if every <= timedelta(0):
        raise UsageError("the replay's period must be positive")
    for col in (at, label_at):
        if col not in table.column_names:
            raise UsageError(f"the replayed table has no column {col!r}")
    controller = controller or Controller(project)
    mon = project.monitoring
    label = mon.label_name()
    keys = mon.join_keys()
    server = BatchServer(project, at=at)
    et, la = table[at], table[label_at]
    table = table.filter(pc.greater_equal(et, pa.scalar(start, et.type)))
    et, la = table[at], table[label_at]
    result = ReplayResult()
    # Ids unique to this replay and reproducible (the canary's assignment hashes them): the
    # monitored log keeps the first prediction of an id, so two replays must not share them.
    run = f"r{to_micros(start)}"
    lo = start
    n = 0
    while lo < until:
        hi = min(lo + every, until)
        events = table.filter(
            pc.and_(
                pc.greater_equal(et, pa.scalar(lo, et.type)), pc.less(et, pa.scalar(hi, et.type))
            )
        )
        served = server.serve(events, id_prefix=f"{run}-{n}") if events.num_rows else {}
        known = table.filter(
            pc.and_(
                pc.and_(
                    pc.greater_equal(la, pa.scalar(lo, la.type)),
                    pc.less(la, pa.scalar(hi, la.type)),
                ),
                pc.is_valid(table[label]),
            )
        )
        sent = (
            mon.send_labels(known, label=label, keys=keys, observed=label_at)["accepted"]
            if known.num_rows
            else 0
        )
        step = controller.step(hi)
        period = Period(
            lo,
            hi,
            events.num_rows,
            dict(served.get("answered", {})),
            int(served.get("shadowed", 0)),
            int(sent),
            step,
        )
        result.periods.append(period)
        if on_period is not None:
            on_period(period)
        lo = hi
        n += 1
    return result
