"""The incident timeline: one time-ordered stream of everything that happened to a project,
read from the records each part already keeps (batches, quarantine, schemas, alerts, the loop's
events, gate verdicts, alias moves, rollouts and the dashboard's own actions).

Nothing is copied into a timeline table: every source is a query on its own table, ordered by
its own time column (each has an index), and a page is the newest ``limit`` entries of the merged
stream before a cursor. A page reads at most ``limit + 1`` keys (time and id) from each source,
walking its time index newest first, then the rows of the ``limit`` entries it shows, so its cost
does not grow with the history (100,000 alerts cost what 100 do; benchmarks/ui.py).

Each source orders by the clock of the thing it records: the wall clock of an ingest or an alias
move, the loop's clock for the loop's events and the alerts it evaluated (a replay runs on the
replayed days). An entry says which it is.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, and_, func, or_, select, true

from loopml.errors import UsageError
from loopml.storage import SqlMetadataStore
from loopml.storage import tables as t

# The groups the filter offers, and the kinds in each (a loop event's kind is its own).
GROUPS: dict[str, tuple[str, ...]] = {
    "data": (
        "batch_landed",
        "batch_held",
        "rows_quarantined",
        "quarantine_released",
        "quarantine_dropped",
        "schema_changed",
        "snapshot",
    ),
    "monitoring": ("alert_raised", "alert_resolved"),
    "loop": (
        "triggered",
        "trained",
        "train_failed",
        "gate_passed",
        "gate_refused",
        "shadow_started",
        "canary_started",
        "canary_step",
        "canary_hold",
        "promoted",
        "rolled_back",
        "paused",
        "resumed",
    ),
    "models": ("gate", "alias_moved", "rollback"),
    "experiments": ("rollout_started", "rollout_ended"),
    "actions": ("action",),
}
KIND_GROUP = {kind: group for group, kinds in GROUPS.items() for kind in kinds}


@dataclass(frozen=True)
class Entry:
    """One thing that happened: when, what kind, to which model (None: to the data), a sentence
    a person reads, and where its evidence is."""

    at: datetime
    kind: str
    title: str
    link: str
    model: str | None = None
    source: str = ""
    key: str = ""  # the source's id: with ``source``, the entry's identity and the tie-breaker
    severity: str = "info"  # info | good | warning | critical: how the page colours it
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return KIND_GROUP.get(self.kind, "loop" if self.source == "loop_events" else "other")


@dataclass(frozen=True)
class TimelinePage:
    entries: list[Entry]
    next_cursor: str | None  # None: this is the oldest page
    counts: dict[str, int]  # entries per group in the filtered range (all pages)


@dataclass(frozen=True)
class _Source:
    name: str
    table: Table
    at: Column[Any]
    id: Column[Any]
    kinds: tuple[str, ...]  # every kind the source can emit
    entry: Callable[[Mapping[str, Any]], Entry]
    model: Column[Any] | None = None
    where: ColumnElement[bool] | None = None  # rows of this source at all (e.g. resolved ones)
    kind_column: Column[Any] | None = None  # the column a kind filter is on (loop events)
    kind_of: Callable[[str], ColumnElement[bool]] | None = None  # SQL for one of its kinds


def encode_cursor(at: datetime, source: str, key: str) -> str:
    raw = f"{at.isoformat()}|{source}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, source, key = raw.split("|", 2)
        return datetime.fromisoformat(at), source, key
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"the timeline cursor {cursor!r} is not one this page gave out",
            details={"cursor": cursor},
        ) from exc


class Timeline:
    """The merged stream over the metadata store."""

    def __init__(self, store: SqlMetadataStore) -> None:
        self.store = store
        self.sources = _sources()

    def page(
        self,
        *,
        groups: Iterable[str] = (),
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> TimelinePage:
        """The newest ``limit`` entries (of ``groups``, all when empty) in ``[since, until)``
        before ``cursor``, newest first, with the count of each group in the range."""
        if not 1 <= limit <= 500:
            raise UsageError(f"limit must be 1 to 500, not {limit}", details={"limit": limit})
        wanted = set(groups)
        unknown = wanted - set(GROUPS)
        if unknown:
            raise UsageError(
                f"unknown timeline kind {sorted(unknown)[0]!r}: one of {', '.join(GROUPS)}",
                details={"kinds": sorted(unknown)},
            )
        after = decode_cursor(cursor) if cursor else None
        # Two passes: the newest limit + 1 keys of each source (time and id, off its index),
        # merged; then the rows of only the entries shown. 500 entries a page read 500 rows,
        # not 13 sources × 501 of them.
        keys: list[tuple[tuple[Any, ...], _Source, datetime, Any]] = []
        counts: dict[str, int] = {g: 0 for g in GROUPS}
        with self.store.read() as conn:
            for src in self.sources:
                base = self._filter(src, wanted, model, since, until)
                if base is None:
                    continue
                walk = self._filter(src, wanted, model, since, until, walk_time=True)
                assert walk is not None
                # Within a time range, the range decides the count's plan too (a month of a
                # model's alerts, not every alert of the model).
                ranged = since is not None or until is not None
                for group, n in self._counts(conn, src, walk if ranged else base).items():
                    counts[group] = counts.get(group, 0) + n
                cond = walk
                if after is not None:
                    cond = and_(cond, _before(src, *after))
                q = select(src.at, src.id).where(cond).order_by(src.at.desc(), src.id.desc())
                for at, key in conn.execute(q.limit(limit + 1)):
                    keys.append((_order_of(at, src.name, str(key)), src, at, key))
            keys.sort(key=lambda k: k[0], reverse=True)
            more = len(keys) > limit
            rows = self._entries(conn, keys[:limit])
        rows.sort(key=_order, reverse=True)
        page = rows[:limit]
        last = page[-1] if page else None
        nxt = encode_cursor(last.at, last.source, last.key) if more and last else None
        return TimelinePage(page, nxt, counts)

    def _entries(
        self, conn: Any, keys: list[tuple[tuple[Any, ...], _Source, datetime, Any]]
    ) -> list[Entry]:
        """The entries of the chosen keys, each source's rows read at once."""
        chosen: dict[str, tuple[_Source, set[tuple[datetime, Any]]]] = {}
        for _, src, at, key in keys:
            chosen.setdefault(src.name, (src, set()))[1].add((at, key))
        out: list[Entry] = []
        for src, pairs in chosen.values():
            ids = sorted({key for _, key in pairs})
            q = select(*_read(src)).where(src.id.in_(ids))
            for row in conn.execute(q).mappings():
                # (time, id) is the key: a schema's version number is not unique on its own.
                if (row[src.at.name], row[src.id.name]) in pairs:
                    out.append(src.entry(dict(row)))
        return out

    def _filter(
        self,
        src: _Source,
        wanted: set[str],
        model: str | None,
        since: datetime | None,
        until: datetime | None,
        *,
        walk_time: bool = False,
    ) -> ColumnElement[bool] | None:
        """The source's rows in the filters, or None when the kinds wanted leave none.
        ``walk_time``: for the page's query, which must walk the time index newest first and
        stop at ``limit + 1`` rows; a model condition SQLite could answer from an index on the
        model would make it read all that model's rows and sort them (60,000 alerts: 90 ms)."""
        # A time column that cannot be null needs no test (which would keep SQLite from
        # counting a model's rows on an index of the model alone).
        conds: list[ColumnElement[bool]] = [src.at.is_not(None)] if src.at.nullable else []
        if src.where is not None:
            conds.append(src.where)
        if wanted:
            groups = {KIND_GROUP.get(k, "loop") for k in src.kinds}
            if not groups & wanted:
                return None
            if src.kind_of is not None and not groups <= wanted:
                kinds = [k for k in src.kinds if KIND_GROUP.get(k, "loop") in wanted]
                conds.append(or_(*(src.kind_of(k) for k in kinds)))
        if model is not None and src.model is not None:
            # The data feeds every model: its entries stay (as do the dashboard's actions).
            conds.append((src.model + "" if walk_time else src.model) == model)
        if since is not None:
            conds.append(src.at >= since)
        if until is not None:
            conds.append(src.at < until)
        return and_(true(), *conds)

    def _counts(self, conn: Any, src: _Source, cond: ColumnElement[bool]) -> dict[str, int]:
        groups = {KIND_GROUP.get(k, "loop") for k in src.kinds}
        if src.kind_column is None or len(groups) == 1:
            # One group: a count on the time index. Grouping by kind would read every row
            # (40,000 loop events: 25 ms, where the count takes 2).
            n = conn.execute(select(func.count()).select_from(src.table).where(cond)).scalar()
            return {groups.pop(): int(n or 0)}
        out: dict[str, int] = {}
        q = select(src.kind_column, func.count()).where(cond).group_by(src.kind_column)
        for kind, n in conn.execute(q):
            group = KIND_GROUP.get(_kind_name(src, kind), "loop")
            out[group] = out.get(group, 0) + int(n)
        return out


# Columns no entry reads: large JSON left unread (a gate's report is kilobytes).
_UNREAD = {
    "batches": ("stats", "warnings", "origin"),
    "quarantine": ("resolution", "path"),
    "schemas": ("definition", "changes"),
    "alerts": ("details",),
    "evaluations": ("report",),
    "rollouts": ("data",),
    "actions": ("outcome",),
}


def _read(src: _Source) -> list[Column[Any]]:
    skip = _UNREAD.get(src.table.name, ())
    return [c for c in src.table.c if c.name not in skip]


def _kind_name(src: _Source, value: Any) -> str:
    if src.name == "alias_history":
        return "rollback" if value == "rollback" else "alias_moved"
    if src.name == "quarantine":
        return "batch_held" if value == "batch" else "rows_quarantined"
    if src.name == "quarantine_resolved":
        return "quarantine_dropped" if value == "dropped" else "quarantine_released"
    return str(value)


def _before(src: _Source, at: datetime, source: str, key: str) -> ColumnElement[bool]:
    """Rows after the cursor in the stream's order (at, source, key), all descending."""
    if src.name < source:  # at the same time, a source of a smaller name comes after
        return src.at <= at
    if src.name > source:
        return src.at < at
    return or_(src.at < at, and_(src.at == at, src.id < _key_value(src, key)))


def _key_value(src: _Source, key: str) -> Any:
    if issubclass(src.id.type.python_type, int):
        try:
            return int(key)
        except ValueError as exc:
            raise UsageError(f"the timeline cursor names {src.name} row {key!r}") from exc
    return key


def _order(e: Entry) -> tuple[Any, ...]:
    return _order_of(e.at, e.source, e.key)


def _order_of(at: datetime, source: str, key: str) -> tuple[Any, ...]:
    # The stream's order: time, then source, then the source's id (numbers as numbers).
    return (at, source, int(key) if key.isdigit() else key)


# ------------------------------------------------------------------------------ the sources


def _plural(n: Any, word: str) -> str:
    n = int(n or 0)
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _sources() -> list[_Source]:
    b, q, s, a, le = t.batches, t.quarantine, t.schemas, t.alerts, t.loop_events
    ah, ev, ro, ac, sn = t.alias_history, t.evaluations, t.rollouts, t.actions, t.snapshots

    def batch(r: Mapping[str, Any]) -> Entry:
        held = int(r["rows_quarantined"] or 0)
        title = f"{r['source']}: batch landed, {_plural(r['rows_accepted'], 'row')}"
        if held:
            title += f", {_plural(held, 'row')} quarantined"
        return Entry(
            r["committed_at"],
            "batch_landed",
            title,
            f"/ui/data/batches/{r['id']}",
            source="batches",
            key=r["id"],
            severity="warning" if held else "info",
        )

    def quarantined(r: Mapping[str, Any]) -> Entry:
        whole = r["kind"] == "batch"
        why = _reasons(r["reasons"])
        title = (
            f"{r['source']}: batch held ({_plural(r['rows'], 'row')})"
            if whole
            else f"{r['source']}: {_plural(r['rows'], 'row')} quarantined"
        )
        return Entry(
            r["created_at"],
            "batch_held" if whole else "rows_quarantined",
            title + (f": {why}" if why else ""),
            f"/ui/data/quarantine/{r['id']}",
            source="quarantine",
            key=r["id"],
            severity="warning",
        )

    def resolved(r: Mapping[str, Any]) -> Entry:
        dropped = r["status"] == "dropped"
        return Entry(
            r["resolved_at"],
            "quarantine_dropped" if dropped else "quarantine_released",
            f"{r['source']}: {_plural(r['rows'], 'row')} {'dropped' if dropped else 'released'}"
            f" by {r['resolved_by'] or 'someone'}",
            f"/ui/data/quarantine/{r['id']}",
            source="quarantine_resolved",
            key=r["id"],
        )

    def schema(r: Mapping[str, Any]) -> Entry:
        return Entry(
            r["created_at"],
            "schema_changed",
            f"{r['source']}: schema version {r['version']} {r['status']}"
            + (f" by {r['created_by']}" if r["created_by"] else ""),
            f"/ui/data/sources/{r['source']}",
            source="schemas",
            key=str(r["version"]),
            severity="warning" if r["status"] == "proposed" else "info",
        )

    def snapshot(r: Mapping[str, Any]) -> Entry:
        return Entry(
            r["created_at"],
            "snapshot",
            f"snapshot {r['id']} taken by {r['created_by']}"
            + (f": {r['note']}" if r["note"] else ""),
            f"/ui/data/snapshots/{r['id']}",
            source="snapshots",
            key=r["id"],
        )

    def alert(r: Mapping[str, Any]) -> Entry:
        return Entry(
            r["first_at"],
            "alert_raised",
            f"alert {r['rule']} ({r['severity']}): {r['metric']} at {_short(r['value'])}, "
            f"threshold {_short(r['threshold'])}",
            f"/ui/monitoring/alerts/{r['id']}",
            model=r["model"],
            source="alerts",
            key=str(r["id"]),
            severity="critical" if r["severity"] == "critical" else "warning",
        )

    def alert_resolved(r: Mapping[str, Any]) -> Entry:
        return Entry(
            r["resolved_at"],
            "alert_resolved",
            f"alert {r['rule']} resolved after {_plural(r['occurrences'], 'evaluation')}",
            f"/ui/monitoring/alerts/{r['id']}",
            model=r["model"],
            source="alerts_resolved",
            key=str(r["id"]),
            severity="good",
        )

    def loop_event(r: Mapping[str, Any]) -> Entry:
        kind = r["kind"]
        detail = dict(r["detail"] or {})
        severity = {
            "rolled_back": "critical",
            "gate_refused": "warning",
            "train_failed": "critical",
            "promoted": "good",
            "gate_passed": "good",
            "paused": "warning",
        }.get(kind, "info")
        return Entry(
            r["at"],
            kind,
            describe_loop_event(kind, detail),
            f"/ui/loop/{r['model']}/cycles/{r['cycle']}#event-{r['id']}",
            model=r["model"],
            source="loop_events",
            key=str(r["id"]),
            severity=severity,
            detail={"cycle": r["cycle"], **detail},
        )

    def gate(r: Mapping[str, Any]) -> Entry:
        passed = bool(r["passed"])
        against = r["against_version"]
        return Entry(
            r["created_at"],
            "gate",
            f"gate {'passed' if passed else 'refused'} version {r['version']}"
            + (f" against version {against}" if against is not None else ""),
            f"/ui/models/{r['model']}/versions/{r['version']}#gate-{r['id']}",
            model=r["model"],
            source="evaluations",
            key=str(r["id"]),
            severity="good" if passed else "warning",
        )

    def alias(r: Mapping[str, Any]) -> Entry:
        action = r["action"]
        moved = f"{r['from_version'] if r['from_version'] is not None else 'none'} → " + (
            f"{r['to_version']}" if r["to_version"] is not None else "none"
        )
        reason = f": {r['reason']}" if r["reason"] else ""
        return Entry(
            r["at"],
            "rollback" if action == "rollback" else "alias_moved",
            f"{r['alias']} {action} {moved} by {r['by']}{reason}",
            f"/ui/served/{r['model']}#move-{r['id']}",
            model=r["model"],
            source="alias_history",
            key=str(r["id"]),
            severity="critical" if action == "rollback" else "good",
        )

    def rollout(r: Mapping[str, Any]) -> Entry:
        return Entry(
            r["started_at"],
            "rollout_started",
            f"{r['strategy']} started: version {r['challenger']} against {r['champion']}",
            f"/ui/experiments/{r['id']}",
            model=r["model"],
            source="rollouts",
            key=str(r["id"]),
        )

    def rollout_ended(r: Mapping[str, Any]) -> Entry:
        status = str(r["status"]).replace("_", " ")
        return Entry(
            r["ended_at"],
            "rollout_ended",
            f"{r['strategy']} of version {r['challenger']} ended: {status}",
            f"/ui/experiments/{r['id']}",
            model=r["model"],
            source="rollouts_ended",
            key=str(r["id"]),
            severity="critical" if r["status"] == "rolled_back" else "info",
        )

    def action(r: Mapping[str, Any]) -> Entry:
        verdict = "" if r["ok"] else " (failed)"
        return Entry(
            r["at"],
            "action",
            f"{r['by']}: {r['action']} {r['target']}{verdict}: {r['reason']}",
            f"/ui/actions#action-{r['id']}",
            source="actions",
            key=str(r["id"]),
            severity="info" if r["ok"] else "warning",
        )

    loop_kinds = GROUPS["loop"]
    return [
        _Source(
            "batches",
            b,
            b.c.committed_at,
            b.c.id,
            ("batch_landed",),
            batch,
            where=b.c.status == "committed",
        ),
        _Source(
            "quarantine",
            q,
            q.c.created_at,
            q.c.id,
            ("batch_held", "rows_quarantined"),
            quarantined,
            kind_column=q.c.kind,
            kind_of=lambda k: q.c.kind == ("batch" if k == "batch_held" else "rows"),
        ),
        _Source(
            "quarantine_resolved",
            q,
            q.c.resolved_at,
            q.c.id,
            ("quarantine_released", "quarantine_dropped"),
            resolved,
            where=q.c.status.in_(("released", "dropped")),
            kind_column=q.c.status,
            kind_of=lambda k: q.c.status == k.removeprefix("quarantine_"),
        ),
        _Source("schemas", s, s.c.created_at, s.c.version, ("schema_changed",), schema),
        _Source("snapshots", sn, sn.c.created_at, sn.c.id, ("snapshot",), snapshot),
        _Source("alerts", a, a.c.first_at, a.c.id, ("alert_raised",), alert, model=a.c.model),
        _Source(
            "alerts_resolved",
            a,
            a.c.resolved_at,
            a.c.id,
            ("alert_resolved",),
            alert_resolved,
            model=a.c.model,
        ),
        _Source(
            "loop_events",
            le,
            le.c.at,
            le.c.id,
            loop_kinds,
            loop_event,
            model=le.c.model,
            kind_column=le.c.kind,
            kind_of=lambda k: le.c.kind == k,
        ),
        _Source("evaluations", ev, ev.c.created_at, ev.c.id, ("gate",), gate, model=ev.c.model),
        _Source(
            "alias_history",
            ah,
            ah.c.at,
            ah.c.id,
            ("alias_moved", "rollback"),
            alias,
            model=ah.c.model,
            kind_column=ah.c.action,
            kind_of=lambda k: (
                (ah.c.action == "rollback") if k == "rollback" else (ah.c.action != "rollback")
            ),
        ),
        _Source(
            "rollouts", ro, ro.c.started_at, ro.c.id, ("rollout_started",), rollout, ro.c.model
        ),
        _Source(
            "rollouts_ended",
            ro,
            ro.c.ended_at,
            ro.c.id,
            ("rollout_ended",),
            rollout_ended,
            model=ro.c.model,
        ),
        _Source("actions", ac, ac.c.at, ac.c.id, ("action",), action),
    ]


def _reasons(reasons: Any) -> str:
    """A quarantine entry's reasons in a few words: ``unparseable (x1) in 1 row``."""
    parts = []
    for reason in reasons if isinstance(reasons, list) else []:
        if not isinstance(reason, Mapping):
            continue
        column = f" ({reason['column']})" if reason.get("column") else ""
        count = reason.get("count")
        rows = f" in {_plural(count, 'row')}" if isinstance(count, int) else ""
        parts.append(f"{reason.get('code', 'held')}{column}{rows}")
    text = "; ".join(parts)
    return text if len(text) <= 120 else text[:119] + "…"


def _short(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}"
    return "–" if x is None else str(x)


def percent_text(x: Any) -> str:
    """A share as a percentage in plain text (a dash for nothing), for a sentence."""
    return f"{100 * float(x):.3g}%" if isinstance(x, int | float) else "–"


def describe_loop_event(kind: str, e: Mapping[str, Any]) -> str:
    """One line a person can read for a loop event."""
    if kind == "triggered":
        parts = []
        for trig in e.get("triggers", []) or []:
            if not isinstance(trig, Mapping):
                continue
            if trig.get("kind") == "alert":
                parts.append(f"alert {trig.get('rule')}")
            elif trig.get("kind") == "schedule":
                parts.append(f"schedule ({trig.get('every')})")
            elif trig.get("kind") == "new_data":
                parts.append(f"{int(trig.get('rows') or 0):,} new rows")
            elif trig.get("kind") == "monitoring":
                signal = str(trig.get("signal") or "a signal").replace("_", " ")
                parts.append(f"{signal} seen by monitoring")
            else:
                parts.append(str(trig.get("kind")))
        return "triggered by " + (", ".join(parts) or "a request")
    if kind == "trained":
        rows = e.get("rows") or {}
        train = rows.get("train") if isinstance(rows, Mapping) else None
        return (
            f"trained version {e.get('version')} ({e.get('mode', 'resumed')}"
            + (f", {int(train):,} rows" if isinstance(train, int | float) else "")
            + ")"
        )
    if kind in ("gate_passed", "gate_refused"):
        failed = "; ".join(str(f) for f in e.get("failed", []) or [])[:120]
        verb = "passed" if kind == "gate_passed" else "refused"
        return f"gate {verb} version {e.get('version')} against {e.get('against')}" + (
            f": {failed}" if failed else ""
        )
    if kind == "canary_started":
        return (
            f"canary: version {e.get('version')} answers {percent_text(e.get('share'))} of requests"
        )
    reasons = e.get("reasons") or (e.get("decision") or {}).get("reasons") or []
    why = "; ".join(str(r) for r in reasons)[:140] if isinstance(reasons, Sequence) else ""
    head = {
        "canary_step": f"canary step {percent_text(e.get('from'))} → {percent_text(e.get('to'))}",
        "canary_hold": "canary holds"
        + (f" at {percent_text(e.get('share'))}" if e.get("share") is not None else "")
        + (f" (rollout {e['rollout']})" if e.get("rollout") is not None else ""),
        "promoted": f"promoted version {e.get('version')} (was {e.get('previous')})",
        "rolled_back": f"rolled back version {e.get('version')} at {percent_text(e.get('share'))}",
        "paused": "loop paused",
        "resumed": "loop resumed",
    }.get(kind, kind.replace("_", " "))
    return f"{head}: {why}" if why else head
