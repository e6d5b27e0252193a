"""What the Data pages read: a page of batches, quarantine entries or snapshots at a time (keyset:
newest first, the cursor is the last row's time and id), and the sources' totals counted by the
database (never a whole table brought into Python)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, and_, case, func, or_, select, true
from sqlalchemy.sql import ColumnElement

from loopml.data import BatchRecord, QuarantineRecord
from loopml.errors import NotFoundError, UsageError
from loopml.storage import tables as t

T = TypeVar("T")
# Batches that were landed or held (a pending batch is being written; an aborted one never was).
SHOWN = ("committed", "reset")
STATUSES = ("held", "released", "dropped", "all")


@dataclass
class Page(Generic[T]):
    rows: list[T]
    next: str | None  # the cursor of the next (older) page, None on the last


@dataclass
class SourceSummary:
    name: str
    format: str | None
    declared: bool
    batches_landed: int = 0
    batches_held: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    entries_held: int = 0
    rows_held: int = 0
    schema_version: int | None = None
    proposed_version: int | None = None


@dataclass
class EntryRow:
    entry: QuarantineRecord
    file: str | None


@dataclass
class SnapshotRow:
    id: str
    created_at: datetime
    created_by: str
    note: str
    batches: int
    rows: int = 0
    sources: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ cursors


def cursor_of(at: datetime | None, key: str) -> str:
    stamp = at.astimezone(UTC).isoformat() if at is not None else ""
    return f"{stamp}|{key}"


def parse_cursor(value: str | None) -> tuple[datetime, str] | None:
    """A cursor from a link (``TIME|ID``); empty is None."""
    if not value:
        return None
    stamp, sep, key = value.rpartition("|")
    try:
        if not sep or not key:
            raise ValueError(value)
        at = datetime.fromisoformat(stamp)
    except ValueError:
        raise UsageError(
            f"before: {value!r} is not a cursor of this list (follow the page's 'older' link)",
            details={"field": "before"},
        ) from None
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at), key


def _older(time_col: Any, id_col: Any, cursor: tuple[datetime, str] | None) -> ColumnElement[bool]:
    if cursor is None:
        return true()
    at, key = cursor
    return or_(time_col < at, and_(time_col == at, id_col < key))


def _page(rows: list[T], limit: int, key: Any) -> Page[T]:
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, key(rows[-1]) if more and rows else None)


# ------------------------------------------------------------------------------------ sources


def source_summaries(conn: Connection, declared: Mapping[str, Any]) -> list[SourceSummary]:
    """Every source (declared, or created by an ingest) with its totals, counted by the
    database: one grouped query per table."""
    b, q, s = t.batches, t.quarantine, t.schemas
    out: dict[str, SourceSummary] = {}
    for name, fmt, is_declared in conn.execute(
        select(t.sources.c.name, t.sources.c.format, t.sources.c.declared)
    ):
        out[name] = SourceSummary(name, fmt, bool(is_declared) or name in declared)
    for name, spec in declared.items():
        if name not in out:
            out[name] = SourceSummary(name, getattr(spec, "format", None), True)
    landed = b.c.lake_path.is_not(None)
    for name, n_landed, rows, held in conn.execute(
        select(
            b.c.source,
            func.sum(case((landed, 1), else_=0)),
            func.sum(func.coalesce(b.c.rows_accepted, 0)),
            func.sum(func.coalesce(b.c.rows_quarantined, 0)),
        )
        .where(b.c.status == "committed")
        .group_by(b.c.source)
    ):
        if name in out:
            out[name].batches_landed = int(n_landed or 0)
            out[name].rows_landed = int(rows or 0)
            out[name].rows_quarantined = int(held or 0)
    for name, kind, n, rows in conn.execute(
        select(q.c.source, q.c.kind, func.count(), func.sum(q.c.rows))
        .where(q.c.status == "held")
        .group_by(q.c.source, q.c.kind)
    ):
        if name in out:
            out[name].entries_held += int(n)
            out[name].rows_held += int(rows or 0)
            if kind == "batch":
                out[name].batches_held = int(n)
    for name, version, status in conn.execute(
        select(s.c.source, s.c.version, s.c.status).where(s.c.status.in_(("active", "proposed")))
    ):
        if name in out:
            if status == "active":
                out[name].schema_version = int(version)
            else:
                out[name].proposed_version = int(version)
    return [out[n] for n in sorted(out)]


def held_totals(conn: Connection, source: str | None = None) -> tuple[int, int]:
    """How many entries the quarantine holds, and how many rows they hold."""
    q = t.quarantine
    query = select(func.count(), func.coalesce(func.sum(q.c.rows), 0)).where(q.c.status == "held")
    if source is not None:
        query = query.where(q.c.source == source)
    n, rows = conn.execute(query).one()
    return int(n), int(rows)


# ------------------------------------------------------------------------------------ batches


def batch_page(
    conn: Connection, *, source: str | None = None, before: str | None = None, limit: int
) -> Page[BatchRecord]:
    """Landed and held batches, newest committed first."""
    b = t.batches
    query = (
        select(b)
        .where(b.c.status.in_(SHOWN), _older(b.c.committed_at, b.c.id, parse_cursor(before)))
        .order_by(b.c.committed_at.desc(), b.c.id.desc())
        .limit(limit + 1)
    )
    if source is not None:
        query = query.where(b.c.source == source)
    rows = [BatchRecord(**r) for r in conn.execute(query).mappings()]
    return _page(rows, limit, lambda r: cursor_of(r.committed_at, r.id))


def get_batch(conn: Connection, batch_id: str) -> BatchRecord:
    row = conn.execute(select(t.batches).where(t.batches.c.id == batch_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no batch {batch_id!r}", details={"batch": batch_id})
    return BatchRecord(**row)


def entries_of_batch(conn: Connection, batch_id: str) -> list[QuarantineRecord]:
    """The quarantine entries a batch made (one, except for a batch quarantined twice)."""
    q = t.quarantine
    rows = conn.execute(select(q).where(q.c.batch_id == batch_id).order_by(q.c.created_at))
    return [QuarantineRecord(**r) for r in rows.mappings()]


# --------------------------------------------------------------------------------- quarantine


def entries_by_id(conn: Connection, ids: list[str]) -> list[QuarantineRecord]:
    q = t.quarantine
    rows = conn.execute(select(q).where(q.c.id.in_(ids)).order_by(q.c.created_at, q.c.id))
    return [QuarantineRecord(**r) for r in rows.mappings()]


def entry_page(
    conn: Connection,
    *,
    source: str | None = None,
    status: str = "held",
    before: str | None = None,
    limit: int,
) -> Page[EntryRow]:
    """Quarantine entries, newest first, with the file each came from."""
    if status not in STATUSES:
        raise UsageError(
            f"status must be {', '.join(STATUSES)}, not {status!r}", details={"field": "status"}
        )
    q, b = t.quarantine, t.batches
    query = (
        select(q, b.c.file.label("_file"))
        .select_from(q.outerjoin(b, b.c.id == q.c.batch_id))
        .where(_older(q.c.created_at, q.c.id, parse_cursor(before)))
        .order_by(q.c.created_at.desc(), q.c.id.desc())
        .limit(limit + 1)
    )
    if source:
        query = query.where(q.c.source == source)
    if status != "all":
        query = query.where(q.c.status == status)
    rows = []
    for r in conn.execute(query).mappings():
        values = dict(r)
        file = values.pop("_file")
        rows.append(EntryRow(QuarantineRecord(**values), file))
    return _page(rows, limit, lambda r: cursor_of(r.entry.created_at, r.entry.id))


def entry_counts(conn: Connection, source: str | None = None) -> dict[str, int]:
    """Entries per status (of a source, or of all)."""
    q = t.quarantine
    query = select(q.c.status, func.count()).group_by(q.c.status)
    if source:
        query = query.where(q.c.source == source)
    counts: dict[str, int] = {str(k): int(n) for k, n in conn.execute(query)}
    counts["all"] = sum(counts.values())
    return counts


# ---------------------------------------------------------------------------------- snapshots


def snapshot_page(conn: Connection, *, before: str | None = None, limit: int) -> Page[SnapshotRow]:
    """Snapshots, newest first, each with how many batches it holds."""
    sn, sb = t.snapshots, t.snapshot_batches
    rows = [
        SnapshotRow(r["id"], r["created_at"], r["created_by"], r["note"], 0)
        for r in conn.execute(
            select(sn)
            .where(_older(sn.c.created_at, sn.c.id, parse_cursor(before)))
            .order_by(sn.c.created_at.desc(), sn.c.id.desc())
            .limit(limit + 1)
        ).mappings()
    ]
    page = _page(rows, limit, lambda r: cursor_of(r.created_at, r.id))
    if page.rows:
        counts: dict[str, int] = {
            str(k): int(n)
            for k, n in conn.execute(
                select(sb.c.snapshot_id, func.count())
                .where(sb.c.snapshot_id.in_([r.id for r in page.rows]))
                .group_by(sb.c.snapshot_id)
            )
        }
        for r in page.rows:
            r.batches = int(counts.get(r.id, 0))
    return page


def get_snapshot(conn: Connection, snapshot_id: str) -> SnapshotRow:
    """A snapshot with its totals: batches, rows, sources (counted by the database)."""
    sn, sb, b = t.snapshots, t.snapshot_batches, t.batches
    row = conn.execute(select(sn).where(sn.c.id == snapshot_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no snapshot {snapshot_id!r}", details={"snapshot": snapshot_id})
    per_source = conn.execute(
        select(b.c.source, func.count(), func.sum(func.coalesce(b.c.rows_accepted, 0)))
        .select_from(sb.join(b, b.c.id == sb.c.batch_id))
        .where(sb.c.snapshot_id == snapshot_id)
        .group_by(b.c.source)
        .order_by(b.c.source)
    ).all()
    return SnapshotRow(
        row["id"],
        row["created_at"],
        row["created_by"],
        row["note"],
        sum(int(n) for _, n, _ in per_source),
        sum(int(r or 0) for _, _, r in per_source),
        [s for s, _, _ in per_source],
    )


def snapshot_batches(
    conn: Connection, snapshot_id: str, *, after: str | None = None, limit: int
) -> Page[BatchRecord]:
    """A snapshot's batches in id order (the order ids are made in: oldest first)."""
    sb, b = t.snapshot_batches, t.batches
    query = (
        select(b)
        .select_from(sb.join(b, b.c.id == sb.c.batch_id))
        .where(sb.c.snapshot_id == snapshot_id)
        .order_by(sb.c.batch_id)
        .limit(limit + 1)
    )
    if after:
        query = query.where(sb.c.batch_id > after)
    rows = [BatchRecord(**r) for r in conn.execute(query).mappings()]
    return _page(rows, limit, lambda r: r.id)
