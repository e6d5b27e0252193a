"""The loop's state and its timeline in the metadata store, and the lease that lets one
controller act at a time.

Every phase change is one transaction that also appends its events, guarded by the state's
revision (compare-and-set): a controller that lost its lease, or a second one racing it, cannot
overwrite a newer state, and a crash leaves either the old state with none of the new events or
the new state with all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from loopml.errors import ConflictError, UsageError
from loopml.storage import SqlMetadataStore
from loopml.storage import tables as t

PHASES = ("idle", "training", "gating", "shadow", "canary", "paused")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LoopState:
    model: str
    phase: str
    cycle: int
    data: dict[str, Any]
    revision: int
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "phase": self.phase,
            "cycle": self.cycle,
            "data": self.data,
            "revision": self.revision,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class LoopEvent:
    id: int
    model: str
    cycle: int
    kind: str
    at: datetime
    recorded_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cycle": self.cycle,
            "kind": self.kind,
            "at": self.at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            **self.detail,
        }


class LoopStore:
    """The loop state and timeline of a project's models."""

    def __init__(self, store: SqlMetadataStore) -> None:
        self.store = store

    def load(self, model: str) -> LoopState:
        """The model's loop state (idle at cycle 0 when the loop never ran)."""
        with self.store.read() as conn:
            row = (
                conn.execute(select(t.loop_state).where(t.loop_state.c.model == model))
                .mappings()
                .first()
            )
        if row is None:
            return LoopState(model, "idle", 0, {}, 0, utcnow())
        return LoopState(
            model,
            row["phase"],
            int(row["cycle"]),
            dict(row["data"] or {}),
            int(row["revision"]),
            row["updated_at"],
        )

    def save(
        self,
        state: LoopState,
        *,
        phase: str,
        cycle: int | None = None,
        data: Mapping[str, Any] | None = None,
        events: Sequence[tuple[str, datetime, Mapping[str, Any]]] = (),
    ) -> LoopState:
        """Move to ``phase`` (and ``cycle``/``data``) and append ``events`` (kind, loop time,
        detail) in one transaction, if nobody changed the state since ``state`` was read."""
        if phase not in PHASES:
            raise UsageError(f"unknown loop phase {phase!r}: one of {', '.join(PHASES)}")
        cycle = state.cycle if cycle is None else cycle
        data = dict(state.data if data is None else data)
        now = utcnow()
        with self.store.write() as conn:
            if state.revision == 0:
                exists = conn.execute(
                    select(t.loop_state.c.revision).where(t.loop_state.c.model == state.model)
                ).scalar()
                if exists is not None:
                    raise ConflictError(f"the loop of {state.model} changed meanwhile")
                conn.execute(
                    t.loop_state.insert().values(
                        model=state.model,
                        phase=phase,
                        cycle=cycle,
                        data=data,
                        revision=1,
                        updated_at=now,
                    )
                )
            else:
                done = conn.execute(
                    update(t.loop_state)
                    .where(
                        and_(
                            t.loop_state.c.model == state.model,
                            t.loop_state.c.revision == state.revision,
                        )
                    )
                    .values(
                        phase=phase,
                        cycle=cycle,
                        data=data,
                        revision=state.revision + 1,
                        updated_at=now,
                    )
                ).rowcount
                if not done:
                    raise ConflictError(f"the loop of {state.model} changed meanwhile")
            for kind, at, detail in events:
                conn.execute(
                    t.loop_events.insert().values(
                        model=state.model,
                        cycle=cycle,
                        kind=kind,
                        at=at,
                        recorded_at=now,
                        detail=dict(detail),
                    )
                )
        return LoopState(state.model, phase, cycle, data, state.revision + 1, now)

    def events(
        self, model: str, *, after: int = 0, limit: int | None = None, kind: str | None = None
    ) -> list[LoopEvent]:
        """The timeline, oldest first."""
        q = (
            select(t.loop_events)
            .where(and_(t.loop_events.c.model == model, t.loop_events.c.id > after))
            .order_by(t.loop_events.c.id)
        )
        if kind is not None:
            q = q.where(t.loop_events.c.kind == kind)
        if limit is not None:
            q = q.limit(limit)
        with self.store.read() as conn:
            return [
                LoopEvent(
                    int(r["id"]),
                    r["model"],
                    int(r["cycle"]),
                    r["kind"],
                    r["at"],
                    r["recorded_at"],
                    dict(r["detail"] or {}),
                )
                for r in conn.execute(q).mappings()
            ]


class Lease:
    """A named lease held by one holder until it expires; renewing it extends it. Taking and
    renewing are one conditional statement each, so two controllers cannot both hold it."""

    def __init__(self, store: SqlMetadataStore, name: str, holder: str, ttl: timedelta) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self.ttl = ttl

    def acquire(self) -> bool:
        """Take or renew the lease; False when another holder has it and it has not expired."""
        now = utcnow()
        expires = now + self.ttl
        with self.store.write() as conn:
            done = conn.execute(
                update(t.leases)
                .where(
                    and_(
                        t.leases.c.name == self.name,
                        or_(t.leases.c.holder == self.holder, t.leases.c.expires_at < now),
                    )
                )
                .values(holder=self.holder, acquired_at=now, expires_at=expires)
            ).rowcount
            if done:
                return True
            exists = conn.execute(
                select(t.leases.c.holder).where(t.leases.c.name == self.name)
            ).scalar()
            if exists is not None:
                return False
            conn.execute(
                t.leases.insert().values(
                    name=self.name, holder=self.holder, acquired_at=now, expires_at=expires
                )
            )
        return True

    def release(self) -> None:
        with self.store.write() as conn:
            conn.execute(
                t.leases.delete().where(
                    and_(t.leases.c.name == self.name, t.leases.c.holder == self.holder)
                )
            )

    def current(self) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = (
                conn.execute(select(t.leases).where(t.leases.c.name == self.name))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return {
            "holder": row["holder"],
            "acquired_at": row["acquired_at"].isoformat(),
            "expires_at": row["expires_at"].isoformat(),
            "expired": row["expires_at"] < utcnow(),
        }
