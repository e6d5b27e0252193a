"""The monitoring and loop pages' read model: the loop's cycles (a page of them, each with its
outcome), the events of one cycle, the cycles an alert triggered, the batches whose rows fall in
a window, and a loop event's numbers as (name, value) pairs a template formats.

Every list reads one page from the metadata tables: cycles are numbered 1 to the current one, so
a page of cycles is a range of numbers; alerts and batches are keyset pages on their ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select

from loopml.storage import SqlMetadataStore
from loopml.storage import tables as t
from loopml.ui._timeline import describe_loop_event, percent_text

# What ended a cycle, and how the page colours it.
ENDINGS = {
    "promoted": "good",
    "rolled_back": "critical",
    "gate_refused": "warning",
    "training_skipped": "warning",
    "train_failed": "critical",
    "rollout_ended": "info",
    "rollback": "critical",
}
PHASE_WORDS = {
    "idle": "idle: waiting for a trigger",
    "training": "training a new version",
    "gating": "gating the new version against the champion",
    "canary": "a canary: the new version answers a share of the requests",
    "shadow": "a shadow: the new version answers alongside the champion, unseen",
    "paused": "paused: too much of the recent data went to quarantine",
}


@dataclass
class Cycle:
    """One cycle of the loop in brief: when it began and ended (the loop's clock), what
    triggered it, the version it trained, and how it ended."""

    number: int
    started: datetime | None = None
    ended: datetime | None = None
    triggers: str = ""
    version: int | None = None
    rollout: int | None = None
    outcome: str = ""
    severity: str = "info"
    events: int = 0
    first_event: int | None = None


@dataclass
class CyclePage:
    cycles: list[Cycle]
    older: int | None  # the ``before`` of the next page (None: the first cycle is shown)
    newest: bool  # this is the page of the latest cycle


def _as_utc(x: datetime) -> datetime:
    return x.replace(tzinfo=UTC) if x.tzinfo is None else x


def outcome(
    events: Sequence[tuple[str, Mapping[str, Any]]], *, current: bool, phase: str
) -> tuple[str, str]:
    """How a cycle ended, in words, with its severity, from its events in order (``current``:
    it is the loop's current cycle, in ``phase``)."""
    for kind, d in reversed(events):
        if kind == "promoted":
            return f"promoted version {d.get('version')}", "good"
        if kind == "rolled_back":
            strategy = "canary" if "step" in d else "rollout"
            return (
                f"rolled back by its {strategy}: version {d.get('version')} "
                f"at {percent_text(d.get('share'))}",
                "critical",
            )
        if kind == "gate_refused":
            return f"refused by the gate: version {d.get('version')}", "warning"
        if kind == "training_skipped":
            return f"training skipped: {d.get('reason', '')}".rstrip(": "), "warning"
        if kind == "train_failed":
            return "training failed", "critical"
        if kind == "rollout_ended":
            return f"rollout {d.get('rollout')} ended: {str(d.get('status')).replace('_', ' ')}", (
                "good" if d.get("status") == "promoted" else "info"
            )
    if current and phase != "idle":
        return f"in progress: {PHASE_WORDS.get(phase, phase)}", "info"
    if not events:
        return "no events recorded", "info"
    return "ended without a promotion", "info"


def describe_trigger(trig: Mapping[str, Any]) -> str:
    """One trigger of a cycle in words (the timeline's words, with the monitoring signal and
    the reason of a trigger by hand)."""
    kind = trig.get("kind")
    if kind == "monitoring":
        signal = str(trig.get("signal", "a signal")).replace("_", " ")
        return f"{signal} seen by the loop's monitoring" + (
            f" ({trig['detail']})" if trig.get("detail") else ""
        )
    if kind == "manual":
        return f"asked by {trig.get('by')}: {trig.get('reason')}"
    if kind == "no_champion":
        return "no champion yet"
    return describe_loop_event("triggered", {"triggers": [trig]}).removeprefix("triggered by ")


def _triggers(detail: Mapping[str, Any]) -> str:
    found = [describe_trigger(x) for x in detail.get("triggers") or [] if isinstance(x, Mapping)]
    return "; ".join(found) or "a request"


def cycles_of(
    store: SqlMetadataStore,
    model: str,
    numbers: Iterable[int],
    *,
    current: int,
    phase: str,
) -> list[Cycle]:
    """The cycles ``numbers`` of ``model``'s loop, in the order given."""
    wanted = sorted(set(numbers))
    if not wanted:
        return []
    le = t.loop_events
    q = (
        select(le.c.id, le.c.cycle, le.c.kind, le.c.at, le.c.detail)
        .where(and_(le.c.model == model, le.c.cycle.between(wanted[0], wanted[-1])))
        .order_by(le.c.id)
    )
    found: dict[int, Cycle] = {n: Cycle(n) for n in wanted}
    events: dict[int, list[tuple[str, Mapping[str, Any]]]] = {n: [] for n in wanted}
    with store.read() as conn:
        for r in conn.execute(q).mappings():
            c = found.get(int(r["cycle"]))
            if c is None:
                continue
            detail = dict(r["detail"] or {})
            at = _as_utc(r["at"])
            c.events += 1
            if c.first_event is None:
                c.first_event = int(r["id"])
            if r["kind"] == "triggered":
                c.started = at
                c.triggers = _triggers(detail)
            c.ended = at
            if r["kind"] == "trained" and detail.get("version") is not None:
                c.version = int(detail["version"])
            if detail.get("rollout") is not None:
                c.rollout = int(detail["rollout"])
            events[c.number].append((str(r["kind"]), detail))
    for n, c in found.items():
        c.outcome, c.severity = outcome(events[n], current=n == current, phase=phase)
    return [found[n] for n in numbers if n in found]


def cycle_page(
    store: SqlMetadataStore,
    model: str,
    *,
    current: int,
    phase: str,
    before: int | None,
    limit: int,
) -> CyclePage:
    """The ``limit`` cycles before cycle ``before`` (default: from the current one), newest
    first."""
    top = current if before is None else min(before - 1, current)
    numbers = list(range(top, max(0, top - limit), -1))
    shown = cycles_of(store, model, numbers, current=current, phase=phase)
    low = numbers[-1] if numbers else 0
    return CyclePage(shown, low if low > 1 else None, top >= current)


@dataclass
class Event:
    """One loop event for the cycle page."""

    id: int
    kind: str
    at: datetime
    recorded_at: datetime
    text: str
    detail: dict[str, Any]
    severity: str = "info"
    numbers: list[tuple[str, Any]] = field(default_factory=list)


def cycle_events(
    store: SqlMetadataStore, model: str, cycle: int, *, after: int = 0, limit: int = 200
) -> tuple[list[Event], int | None]:
    """The events of one cycle in order (``limit`` after event id ``after``) and the id to
    continue after (None: the last is shown)."""
    le = t.loop_events
    q = (
        select(le)
        .where(and_(le.c.model == model, le.c.cycle == cycle, le.c.id > after))
        .order_by(le.c.id)
        .limit(limit + 1)
    )
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    more = len(rows) > limit
    out = []
    for r in rows[:limit]:
        detail = dict(r["detail"] or {})
        kind = str(r["kind"])
        out.append(
            Event(
                int(r["id"]),
                kind,
                _as_utc(r["at"]),
                _as_utc(r["recorded_at"]),
                f"triggered by {_triggers(detail)}"
                if kind == "triggered"
                else describe_loop_event(kind, detail),
                detail,
                ENDINGS.get(kind, "good" if kind == "gate_passed" else "info"),
                flat(detail.get("numbers") or {}),
            )
        )
    return out, (out[-1].id if more and out else None)


def flat(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested numbers as (dotted name, value) pairs (lists of plain values joined)."""
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += flat(value, name + ".")
        elif isinstance(value, list | tuple):
            if all(not isinstance(v, Mapping | list | tuple) for v in value):
                out.append((name, ", ".join(_plain(v) for v in value) if value else None))
        else:
            out.append((name, value))
    return out


def _plain(v: Any) -> str:
    return small(v) if isinstance(v, float) else str(v)


def small(v: Any) -> Any:
    """A float as text with 4 significant digits, in powers of ten below a thousandth
    (``9.85e-05``, never ``0.00009846``); other values as they are."""
    if not isinstance(v, float) or not math.isfinite(v):
        return v
    if v.is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) < 0.001:
        return f"{v:.2e}"
    if abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:.4g}"


def when_text(value: Any) -> str:
    """An ISO time of an event's detail as the pages show times."""
    if not isinstance(value, str):
        return "–" if value is None else str(value)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    at = at.astimezone(UTC) if at.tzinfo is not None else at
    return at.strftime("%Y-%m-%d %H:%M:%S" if at.second else "%Y-%m-%d %H:%M") + " UTC"


def cycles_triggered_by(
    store: SqlMetadataStore, alert_id: int, model: str | None, since: datetime, *, limit: int = 50
) -> list[int]:
    """The cycles whose ``triggered`` event names alert ``alert_id`` (their triggers' entries
    of kind "alert"), oldest first: the loop's triggered events from the alert's first firing
    on (one a cycle, so few)."""
    le = t.loop_events
    q = select(le.c.cycle, le.c.detail).where(and_(le.c.kind == "triggered", le.c.at >= since))
    if model is not None:
        q = q.where(le.c.model == model)
    found: list[int] = []
    with store.read() as conn:
        for r in conn.execute(q.order_by(le.c.id).limit(10_000)).mappings():
            for trig in (r["detail"] or {}).get("triggers") or []:
                if (
                    isinstance(trig, Mapping)
                    and trig.get("kind") == "alert"
                    and str(trig.get("alert")) == str(alert_id)
                ):
                    found.append(int(r["cycle"]))
                    break
            if len(found) >= limit:
                break
    return found


@dataclass
class BatchRow:
    id: str
    source: str
    rows: int | None
    committed_at: datetime | None
    time_min: str | None
    time_max: str | None


def batches_in(
    store: SqlMetadataStore,
    start: datetime,
    end: datetime,
    *,
    before: str | None,
    limit: int,
) -> tuple[list[BatchRow], str | None]:
    """The committed batches with rows whose event-time range (``stats`` time_min/time_max,
    recorded at ingest) overlaps ``[start, end)``, and those that recorded none ("time range
    not recorded": landed by an older loopml), newest first; a page of ``limit`` and the
    cursor of the next."""
    b = t.batches
    lo = b.c.stats["time_min"].as_string()
    hi = b.c.stats["time_max"].as_string()
    start_s, end_s = _iso(start), _iso(end)
    cond = and_(
        b.c.status == "committed",
        b.c.rows_accepted > 0,
        or_(and_(lo < end_s, hi >= start_s), lo.is_(None)),
    )
    if before:
        cond = and_(cond, b.c.id < before)
    q = (
        select(b.c.id, b.c.source, b.c.rows_accepted, b.c.committed_at, lo, hi)
        .where(cond)
        .order_by(b.c.id.desc())
        .limit(limit + 1)
    )
    with store.read() as conn:
        rows = conn.execute(q).all()
    more = len(rows) > limit
    out = [
        BatchRow(
            str(r[0]),
            str(r[1]),
            r[2],
            _as_utc(r[3]) if r[3] is not None else None,
            r[4],
            r[5],
        )
        for r in rows[:limit]
    ]
    return out, (out[-1].id if more and out else None)


def _iso(x: datetime) -> str:
    return _as_utc(x).astimezone(UTC).isoformat()
