"""The data catalog in the metadata store: sources, schema versions, batches, quarantine entries
and snapshots. Every function takes an open connection, so callers compose them into one
transaction (``with store.write() as conn``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

from loopml.data._schema import Schema, SchemaChange
from loopml.errors import ConflictError, NotFoundError
from loopml.storage import tables as t


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SourceRecord:
    name: str
    format: str
    declared: bool
    config: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class SchemaVersion:
    source: str
    version: int
    status: str
    schema: Schema
    changes: list[SchemaChange]
    created_at: datetime
    created_by: str
    note: str


@dataclass(frozen=True)
class BatchRecord:
    id: str
    source: str
    status: str
    content_hash: str
    file: str
    format: str
    rows_read: int | None
    rows_accepted: int | None
    rows_quarantined: int | None
    schema_version: int | None
    lake_path: str | None
    stats: dict[str, Any] | None
    warnings: list[dict[str, Any]] | None
    origin: dict[str, Any]
    owner: str
    started_at: datetime
    committed_at: datetime | None


@dataclass(frozen=True)
class QuarantineRecord:
    id: str
    batch_id: str
    source: str
    kind: str
    status: str
    rows: int
    reasons: list[dict[str, Any]]
    path: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: dict[str, Any] | None


@dataclass(frozen=True)
class SnapshotRecord:
    id: str
    created_at: datetime
    created_by: str
    note: str
    batch_ids: list[str]


# ------------------------------------------------------------------------------------ sources


def get_source(conn: Connection, name: str) -> SourceRecord | None:
    row = conn.execute(select(t.sources).where(t.sources.c.name == name)).mappings().first()
    return SourceRecord(**row) if row else None


def list_sources(conn: Connection) -> list[SourceRecord]:
    rows = conn.execute(select(t.sources).order_by(t.sources.c.name)).mappings()
    return [SourceRecord(**r) for r in rows]


def ensure_source(
    conn: Connection, name: str, *, format: str, declared: bool, config: dict[str, Any]
) -> SourceRecord:
    """The source, created if it is not registered yet; a declared source's config is kept
    in step with the spec."""
    existing = get_source(conn, name)
    if existing is None:
        conn.execute(
            t.sources.insert().values(
                name=name, format=format, declared=declared, config=config, created_at=utcnow()
            )
        )
    elif declared and (
        existing.config != config or not existing.declared or existing.format != format
    ):
        conn.execute(
            update(t.sources)
            .where(t.sources.c.name == name)
            .values(format=format, declared=True, config=config)
        )
    found = get_source(conn, name)
    assert found is not None
    return found


# ------------------------------------------------------------------------------------ schemas


def _schema_version(row: Any) -> SchemaVersion:
    return SchemaVersion(
        source=row["source"],
        version=row["version"],
        status=row["status"],
        schema=Schema.model_validate(row["definition"]),
        changes=[SchemaChange.model_validate(c) for c in (row["changes"] or [])],
        created_at=row["created_at"],
        created_by=row["created_by"],
        note=row["note"],
    )


def _schema_in(conn: Connection, source: str, status: str) -> SchemaVersion | None:
    row = (
        conn.execute(
            select(t.schemas).where(
                and_(t.schemas.c.source == source, t.schemas.c.status == status)
            )
        )
        .mappings()
        .first()
    )
    return _schema_version(row) if row else None


def active_schema(conn: Connection, source: str) -> SchemaVersion | None:
    return _schema_in(conn, source, "active")


def proposed_schema(conn: Connection, source: str) -> SchemaVersion | None:
    """The one pending proposal of a source, if any."""
    return _schema_in(conn, source, "proposed")


def schema_versions(conn: Connection, source: str) -> list[SchemaVersion]:
    rows = conn.execute(
        select(t.schemas).where(t.schemas.c.source == source).order_by(t.schemas.c.version)
    ).mappings()
    return [_schema_version(r) for r in rows]


def add_schema(
    conn: Connection,
    source: str,
    schema: Schema,
    *,
    status: str,
    by: str,
    note: str = "",
    changes: list[SchemaChange] | None = None,
) -> int:
    """Insert a schema version; an active one supersedes the previous active one."""
    last = conn.execute(
        select(func.max(t.schemas.c.version)).where(t.schemas.c.source == source)
    ).scalar()
    version = (last or 0) + 1
    if status == "active":
        conn.execute(
            update(t.schemas)
            .where(and_(t.schemas.c.source == source, t.schemas.c.status == "active"))
            .values(status="superseded")
        )
    conn.execute(
        t.schemas.insert().values(
            source=source,
            version=version,
            status=status,
            definition=schema.model_dump(mode="json"),
            changes=[c.model_dump() for c in changes or []],
            created_at=utcnow(),
            created_by=by,
            note=note,
        )
    )
    return version


def replace_proposal(
    conn: Connection,
    source: str,
    schema: Schema,
    changes: list[SchemaChange],
    *,
    by: str,
    note: str,
) -> int:
    """Record (or update) the one pending proposal of a source."""
    pending = proposed_schema(conn, source)
    if pending is None:
        return add_schema(
            conn, source, schema, status="proposed", by=by, note=note, changes=changes
        )
    conn.execute(
        update(t.schemas)
        .where(and_(t.schemas.c.source == source, t.schemas.c.version == pending.version))
        .values(
            definition=schema.model_dump(mode="json"),
            changes=[c.model_dump() for c in changes],
            note=note,
            created_at=utcnow(),
            created_by=by,
        )
    )
    return pending.version


def activate(conn: Connection, source: str, version: int, *, by: str, note: str) -> None:
    """Make a proposed version the active one."""
    conn.execute(
        update(t.schemas)
        .where(and_(t.schemas.c.source == source, t.schemas.c.status == "active"))
        .values(status="superseded")
    )
    conn.execute(
        update(t.schemas)
        .where(and_(t.schemas.c.source == source, t.schemas.c.version == version))
        .values(status="active", created_by=by, note=note, created_at=utcnow())
    )


# ------------------------------------------------------------------------------------ batches


def _batch(row: Any) -> BatchRecord:
    return BatchRecord(**row)


def batch_by_hash(conn: Connection, source: str, content_hash: str) -> BatchRecord | None:
    row = (
        conn.execute(
            select(t.batches).where(
                and_(
                    t.batches.c.source == source,
                    t.batches.c.content_hash == content_hash,
                    t.batches.c.status != "aborted",
                )
            )
        )
        .mappings()
        .first()
    )
    return _batch(row) if row else None


def get_batch(conn: Connection, batch_id: str) -> BatchRecord:
    row = conn.execute(select(t.batches).where(t.batches.c.id == batch_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no batch {batch_id!r}", details={"batch": batch_id})
    return _batch(row)


def list_batches(
    conn: Connection, *, source: str | None = None, status: str | None = "committed"
) -> list[BatchRecord]:
    q = select(t.batches)
    if source is not None:
        q = q.where(t.batches.c.source == source)
    if status is not None:
        q = q.where(t.batches.c.status == status)
    rows = conn.execute(q.order_by(t.batches.c.started_at, t.batches.c.id)).mappings()
    return [_batch(r) for r in rows]


def insert_pending(
    conn: Connection,
    *,
    batch_id: str,
    source: str,
    content_hash: str,
    file: str,
    format: str,
    origin: dict[str, Any],
    owner: str,
) -> None:
    conn.execute(
        t.batches.insert().values(
            id=batch_id,
            source=source,
            status="pending",
            content_hash=content_hash,
            file=file,
            format=format,
            origin=origin,
            owner=owner,
            started_at=utcnow(),
        )
    )


def commit_batch(
    conn: Connection,
    batch_id: str,
    *,
    rows_read: int,
    rows_accepted: int,
    rows_quarantined: int,
    schema_version: int | None,
    lake_path: str | None,
    stats: dict[str, Any],
    warnings: list[dict[str, Any]],
) -> None:
    result = conn.execute(
        update(t.batches)
        .where(and_(t.batches.c.id == batch_id, t.batches.c.status == "pending"))
        .values(
            status="committed",
            rows_read=rows_read,
            rows_accepted=rows_accepted,
            rows_quarantined=rows_quarantined,
            schema_version=schema_version,
            lake_path=lake_path,
            stats=stats,
            warnings=warnings,
            committed_at=utcnow(),
        )
    )
    if result.rowcount != 1:
        raise NotFoundError(
            f"batch {batch_id} is no longer pending (another process aborted it)",
            details={"batch": batch_id},
        )


def forget_new_source(conn: Connection, name: str) -> bool:
    """Unregister a source whose first file was refused: only when nothing but aborted batches
    ever came of it (no schema, no quarantine entry, no other batch). True when it went."""
    batches = conn.execute(select(t.batches.c.status).where(t.batches.c.source == name)).scalars()
    if any(status != "aborted" for status in batches):
        return False
    for table in (t.schemas, t.quarantine):
        if conn.execute(select(func.count()).where(table.c.source == name)).scalar_one():
            return False
    conn.execute(delete(t.batches).where(t.batches.c.source == name))
    conn.execute(delete(t.sources).where(t.sources.c.name == name))
    return True


def abort_batch(conn: Connection, batch_id: str) -> None:
    conn.execute(
        update(t.batches)
        .where(and_(t.batches.c.id == batch_id, t.batches.c.status == "pending"))
        .values(status="aborted", committed_at=utcnow())
    )


def recent_stats(conn: Connection, source: str, limit: int) -> list[dict[str, Any]]:
    """Stats of the latest delivered files of a source that landed rows, newest first: not the
    files held whole, not stream micro-batches, not releases of quarantined rows (batch checks
    compare a file with files)."""
    rows = conn.execute(
        select(t.batches.c.stats, t.batches.c.origin)
        .where(
            and_(
                t.batches.c.source == source,
                t.batches.c.status == "committed",
                t.batches.c.rows_accepted > 0,
            )
        )
        .order_by(t.batches.c.committed_at.desc())
    )
    out: list[dict[str, Any]] = []
    for stats, origin in rows:
        # Batches from before the flag was recorded: those ingested from a file.
        if stats and stats.get("delivery", (origin or {}).get("kind") == "file"):
            out.append(stats)
            if len(out) >= limit:
                break
    return out


# --------------------------------------------------------------------------------- quarantine


def _entry(row: Any) -> QuarantineRecord:
    return QuarantineRecord(**row)


def add_quarantine(
    conn: Connection,
    *,
    entry_id: str,
    batch_id: str,
    source: str,
    kind: str,
    rows: int,
    reasons: list[dict[str, Any]],
    path: str,
) -> None:
    conn.execute(
        t.quarantine.insert().values(
            id=entry_id,
            batch_id=batch_id,
            source=source,
            kind=kind,
            status="held",
            rows=rows,
            reasons=reasons,
            path=path,
            created_at=utcnow(),
        )
    )


def reheld_quarantine(conn: Connection, entry_id: str, reasons: list[dict[str, Any]]) -> None:
    """An entry whose release was held again is held for what holds it now (``reasons``); what
    held it before is kept after them, marked ``earlier`` (and ``also``: no longer what a
    release must deal with)."""
    row = conn.execute(select(t.quarantine.c.reasons).where(t.quarantine.c.id == entry_id)).scalar()
    now = {(r.get("code"), r.get("column")) for r in reasons}
    earlier = [
        dict(r, also=True, earlier=True)
        for r in row or []
        if (r.get("code"), r.get("column")) not in now
    ]
    conn.execute(
        update(t.quarantine)
        .where(t.quarantine.c.id == entry_id)
        .values(reasons=[*reasons, *earlier])
    )


def get_quarantine(conn: Connection, entry_id: str) -> QuarantineRecord:
    row = conn.execute(select(t.quarantine).where(t.quarantine.c.id == entry_id)).mappings().first()
    if row is None:
        raise NotFoundError(
            f"no quarantine entry {entry_id!r}: `loopml quarantine list` shows them",
            details={"quarantine": entry_id},
        )
    return _entry(row)


def list_quarantine(
    conn: Connection, *, source: str | None = None, status: str | None = "held"
) -> list[QuarantineRecord]:
    q = select(t.quarantine)
    if source is not None:
        q = q.where(t.quarantine.c.source == source)
    if status is not None:
        q = q.where(t.quarantine.c.status == status)
    rows = conn.execute(q.order_by(t.quarantine.c.created_at, t.quarantine.c.id)).mappings()
    return [_entry(r) for r in rows]


def resolve_quarantine(
    conn: Connection, entry_id: str, *, status: str, by: str, resolution: dict[str, Any]
) -> None:
    """Mark a held entry released or dropped; fails if someone else resolved it first."""
    result = conn.execute(
        update(t.quarantine)
        .where(and_(t.quarantine.c.id == entry_id, t.quarantine.c.status == "held"))
        .values(status=status, resolved_at=utcnow(), resolved_by=by, resolution=resolution)
    )
    if result.rowcount != 1:
        current = get_quarantine(conn, entry_id)
        raise ConflictError(
            f"quarantine entry {entry_id} is {current.status}, not held",
            details={"quarantine": entry_id, "status": current.status},
        )


# ---------------------------------------------------------------------------------- snapshots


def create_snapshot(
    conn: Connection, snapshot_id: str, batch_ids: list[str], *, by: str, note: str
) -> SnapshotRecord:
    now = utcnow()
    conn.execute(
        t.snapshots.insert().values(id=snapshot_id, created_at=now, created_by=by, note=note)
    )
    if batch_ids:
        conn.execute(
            t.snapshot_batches.insert(),
            [{"snapshot_id": snapshot_id, "batch_id": b} for b in batch_ids],
        )
    return SnapshotRecord(snapshot_id, now, by, note, list(batch_ids))


def get_snapshot(conn: Connection, snapshot_id: str) -> SnapshotRecord:
    row = (
        conn.execute(select(t.snapshots).where(t.snapshots.c.id == snapshot_id)).mappings().first()
    )
    if row is None:
        raise NotFoundError(
            f"no snapshot {snapshot_id!r}: `loopml data snapshots` lists them",
            details={"snapshot": snapshot_id},
        )
    ids = conn.execute(
        select(t.snapshot_batches.c.batch_id)
        .where(t.snapshot_batches.c.snapshot_id == snapshot_id)
        .order_by(t.snapshot_batches.c.batch_id)
    ).scalars()
    return SnapshotRecord(row["id"], row["created_at"], row["created_by"], row["note"], list(ids))


def list_snapshots(conn: Connection) -> list[SnapshotRecord]:
    rows = conn.execute(select(t.snapshots).order_by(t.snapshots.c.created_at)).mappings().all()
    members: dict[str, list[str]] = {}
    for snap, batch in conn.execute(
        select(t.snapshot_batches.c.snapshot_id, t.snapshot_batches.c.batch_id).order_by(
            t.snapshot_batches.c.batch_id
        )
    ):
        members.setdefault(snap, []).append(batch)
    return [
        SnapshotRecord(
            r["id"], r["created_at"], r["created_by"], r["note"], members.get(r["id"], [])
        )
        for r in rows
    ]


# -------------------------------------------------------------------------------------- reset


def snapshots_holding(conn: Connection, batch_ids: list[str]) -> list[str]:
    """Ids of the snapshots that include any of ``batch_ids``, oldest first."""
    if not batch_ids:
        return []
    rows = conn.execute(
        select(t.snapshot_batches.c.snapshot_id, t.snapshots.c.created_at)
        .join(t.snapshots, t.snapshots.c.id == t.snapshot_batches.c.snapshot_id)
        .where(t.snapshot_batches.c.batch_id.in_(batch_ids))
        .order_by(t.snapshots.c.created_at, t.snapshot_batches.c.snapshot_id)
    ).all()
    return list(dict.fromkeys(r[0] for r in rows))


def reset_source(conn: Connection, source: str, *, by: str) -> None:
    """Forget a source's data in the catalog: its committed batches become ``reset`` (kept for
    the record and for the snapshots naming them), its held quarantine entries are dropped, and
    its schema versions are retired, so that the next batch infers a schema anew."""
    now = utcnow()
    for b in list_batches(conn, source=source, status="committed"):
        # The content hash must stop blocking a new ingest of the same file, and the column is
        # unique among batches that are not aborted: a tombstone takes its place, the original
        # stays in the batch's origin.
        tombstone = hashlib.sha256(f"reset:{b.id}:{b.content_hash}".encode()).hexdigest()
        reset = {"at": now.isoformat(), "by": by, "content_hash": b.content_hash,
                 "lake_path": b.lake_path}  # fmt: skip
        conn.execute(
            update(t.batches)
            .where(t.batches.c.id == b.id)
            .values(
                status="reset",
                content_hash=tombstone,
                lake_path=None,
                origin={**(b.origin or {}), "reset": reset},
            )
        )
    for entry in list_quarantine(conn, source=source, status="held"):
        resolve_quarantine(
            conn,
            entry.id,
            status="dropped",
            by=by,
            resolution={"reason": f"source {source} reset (loopml data reset)", "rows": entry.rows},
        )
    conn.execute(
        update(t.schemas)
        .where(and_(t.schemas.c.source == source, t.schemas.c.status.in_(["active", "proposed"])))
        .values(status="reset", note=f"retired by loopml data reset ({now:%Y-%m-%d %H:%M} by {by})")
    )
