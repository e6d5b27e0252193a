"""Counters in the metadata store (SQLite or Postgres): increments with
``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``, snapshots replaced only by a newer
stamp (an upsert with a ``WHERE`` on the stamp)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, delete, select

from loopml.storage import _tables as t
from loopml.storage._counters import Counter, Counts, decode_snapshot, encode_snapshot
from loopml.storage._metadata import SqlMetadataStore


class SqlCounters:
    """Counters in the metadata store (tables ``rollout_counters`` and ``rollout_snapshots``)."""

    def __init__(self, store: SqlMetadataStore) -> None:
        self.store = store

    def describe(self) -> str:
        return "the metadata store"

    def add(self, rollout_id: int, counts: Mapping[tuple[int, str], Counter]) -> None:
        if not counts:
            return
        with self.store.write() as conn:
            stmt = _insert(conn)(t.rollout_counters)
            stmt = stmt.on_conflict_do_update(
                index_elements=["rollout_id", "version", "name"],
                set_={
                    "n": t.rollout_counters.c.n + stmt.excluded.n,
                    "total": t.rollout_counters.c.total + stmt.excluded.total,
                    "total_sq": t.rollout_counters.c.total_sq + stmt.excluded.total_sq,
                },
            )
            conn.execute(
                stmt,
                [
                    {
                        "rollout_id": rollout_id,
                        "version": version,
                        "name": name,
                        "n": c.n,
                        "total": c.total,
                        "total_sq": c.total_sq,
                    }
                    for (version, name), c in counts.items()
                ],
            )

    def counts(self, rollout_id: int) -> Counts:
        with self.store.read() as conn:
            rows = conn.execute(
                select(t.rollout_counters).where(t.rollout_counters.c.rollout_id == rollout_id)
            ).mappings()
            out: Counts = {}
            for r in rows:
                out.setdefault(int(r["version"]), {})[r["name"]] = Counter(
                    float(r["n"]), float(r["total"]), float(r["total_sq"])
                )
        return out

    def put_snapshot(
        self, rollout_id: int, name: str, stamp: float, values: Mapping[int, Counter]
    ) -> bool:
        table = t.rollout_snapshots
        with self.store.write() as conn:
            stmt = _insert(conn)(table).values(
                rollout_id=rollout_id, name=name, stamp=stamp, data=encode_snapshot(values)
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["rollout_id", "name"],
                set_={"stamp": stmt.excluded.stamp, "data": stmt.excluded.data},
                where=table.c.stamp < stmt.excluded.stamp,
            )
            # RETURNING, not rowcount: a driver may report -1 for an upsert that changed nothing.
            return conn.execute(stmt.returning(table.c.stamp)).first() is not None

    def snapshot(self, rollout_id: int, name: str) -> tuple[float, dict[int, Counter]]:
        table = t.rollout_snapshots
        with self.store.read() as conn:
            row = (
                conn.execute(
                    select(table.c.stamp, table.c.data).where(
                        and_(table.c.rollout_id == rollout_id, table.c.name == name)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return float("-inf"), {}
        return float(row["stamp"]), decode_snapshot(row["data"])

    def drop(self, rollout_id: int) -> None:
        with self.store.write() as conn:
            for table in (t.rollout_counters, t.rollout_snapshots):
                conn.execute(delete(table).where(table.c.rollout_id == rollout_id))


def _insert(conn: Any) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
