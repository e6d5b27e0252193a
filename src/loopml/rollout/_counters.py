"""The counters of rollouts and experiments, shared by every serving worker: in the metadata
store (the default; SQLite or Postgres) or in Redis (``storage.counters: redis://...``).

Two kinds of shared state, both atomic on either backend:

- **increments** (requests, errors, latency, pulls of each arm): added by many workers at once
  with ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` or Redis ``HINCRBYFLOAT`` in
  one ``MULTI``; no update is lost, whatever the interleaving.
- **snapshots** (a bandit's rewards per arm, recomputed from the feedback log): replaced as a
  whole, and only by a newer one (a compare-and-set on its stamp, the number of labels it
  counts), so two processes crediting the same log at once leave the newer result and never a
  mix, and crediting twice counts nothing twice.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import and_, delete, select

from loopml.rollout._store import Counter, Counts
from loopml.storage import _tables as t

REWARDS = "rewards"  # the snapshot of a bandit's rewards per arm

if TYPE_CHECKING:
    from loopml.spec import RedisConfig
    from loopml.storage import SqlMetadataStore


class CounterStore(Protocol):
    """Where a rollout's shared counters live."""

    def add(self, rollout_id: int, counts: Mapping[tuple[int, str], Counter]) -> None:
        """Add to the counters ``(version, name)`` atomically."""

    def counts(self, rollout_id: int) -> Counts:
        """version -> name -> counter."""

    def put_snapshot(
        self, rollout_id: int, name: str, stamp: float, values: Mapping[int, Counter]
    ) -> bool:
        """Replace the snapshot ``name`` (version -> counter) if ``stamp`` is newer than the
        stored one; False when a newer or equal one is there already."""

    def snapshot(self, rollout_id: int, name: str) -> tuple[float, dict[int, Counter]]:
        """The stored snapshot and its stamp (``-inf`` and nothing when there is none)."""

    def drop(self, rollout_id: int) -> None:
        """Forget a rollout's counters and snapshots."""

    def describe(self) -> str: ...


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
                rollout_id=rollout_id, name=name, stamp=stamp, data=_encode(values)
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
        return float(row["stamp"]), _decode(row["data"])

    def drop(self, rollout_id: int) -> None:
        with self.store.write() as conn:
            for table in (t.rollout_counters, t.rollout_snapshots):
                conn.execute(delete(table).where(table.c.rollout_id == rollout_id))


# KEYS[1]: the snapshot's hash; ARGV[1]: stamp; ARGV[2]: the encoded values.
_PUT_SNAPSHOT_LUA = """
local old = redis.call('HGET', KEYS[1], 'stamp')
if old and tonumber(old) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'stamp', ARGV[1], 'data', ARGV[2])
return 1
"""


class RedisCounters:
    """Counters in Redis, every key under ``{prefix}:rollout:{id}:``.

    ``{prefix}:rollout:{id}:counts`` is a hash of ``{version}|{name}|{n,total,total_sq}``
    fields, added to with ``HINCRBYFLOAT`` inside ``MULTI``/``EXEC``; a snapshot is the hash
    ``{prefix}:rollout:{id}:snap:{name}`` (stamp, data), replaced by a Lua compare-and-set."""

    def __init__(self, config: RedisConfig) -> None:
        from loopml.storage._online_redis import connect, translate

        self.prefix = config.prefix
        redis, self._client, self._description = connect(config, "the rollout counters")
        self._translate = functools.partial(
            translate, redis, "the rollout counters", self._description
        )
        self._put = self._client.register_script(_PUT_SNAPSHOT_LUA)

    def describe(self) -> str:
        return f"Redis {self._description}"

    def _key(self, rollout_id: int, *rest: str) -> str:
        return ":".join((self.prefix, "rollout", str(int(rollout_id)), *rest))

    def add(self, rollout_id: int, counts: Mapping[tuple[int, str], Counter]) -> None:
        if not counts:
            return
        key = self._key(rollout_id, "counts")
        with self._translate():
            pipe = self._client.pipeline(transaction=True)
            for (version, name), c in counts.items():
                base = f"{int(version)}|{name}|"
                pipe.hincrbyfloat(key, base + "n", c.n)
                pipe.hincrbyfloat(key, base + "total", c.total)
                pipe.hincrbyfloat(key, base + "total_sq", c.total_sq)
            pipe.execute()

    def counts(self, rollout_id: int) -> Counts:
        with self._translate():
            raw = self._client.hgetall(self._key(rollout_id, "counts"))
        fields: dict[tuple[int, str], dict[str, float]] = {}
        for k, v in raw.items():
            version, name, part = k.decode().split("|")
            fields.setdefault((int(version), name), {})[part] = float(v)
        out: Counts = {}
        for (version, name), f in fields.items():
            out.setdefault(version, {})[name] = Counter(
                f.get("n", 0.0), f.get("total", 0.0), f.get("total_sq", 0.0)
            )
        return out

    def put_snapshot(
        self, rollout_id: int, name: str, stamp: float, values: Mapping[int, Counter]
    ) -> bool:
        key = self._key(rollout_id, "snap", name)
        with self._translate():
            return bool(self._put(keys=[key], args=[repr(float(stamp)), _encode(values)]))

    def snapshot(self, rollout_id: int, name: str) -> tuple[float, dict[int, Counter]]:
        with self._translate():
            raw = self._client.hgetall(self._key(rollout_id, "snap", name))
        if not raw:
            return float("-inf"), {}
        return float(raw[b"stamp"]), _decode(raw[b"data"].decode())

    def drop(self, rollout_id: int) -> None:
        with self._translate():
            keys = list(self._client.scan_iter(match=self._key(rollout_id, "*"), count=500))
            if keys:
                self._client.delete(*keys)

    def close(self) -> None:
        self._client.close()


def open_counters(config: Any, store: SqlMetadataStore) -> CounterStore:
    """The project's counter store: the metadata store unless ``storage.counters`` names Redis."""
    if config is None:
        return SqlCounters(store)
    return RedisCounters(config)


def _insert(conn: Any) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _encode(values: Mapping[int, Counter]) -> str:
    return json.dumps(
        {str(int(v)): [c.n, c.total, c.total_sq] for v, c in values.items()}, sort_keys=True
    )


def _decode(data: Any) -> dict[int, Counter]:
    raw = json.loads(data) if isinstance(data, str) else data
    return {int(v): Counter(*map(float, c)) for v, c in (raw or {}).items()}
