"""In-memory stores for users' tests (as httpx ships ``MockTransport``): each one implements its
storage role's protocol with the semantics of the real backends, and passes the same contract
suite, so code that takes an ``OnlineStore`` or an ``EventLog`` can be tested without files or
servers.

>>> from loopml.storage import TileWrite
>>> store = MemoryOnlineStore()
>>> store.put_latest("users", [("u1", 1.0, b"a"), ("u1", 0.5, b"older")])
1
>>> store.get_latest("users", ["u1", "u2"])
[(1.0, b'a'), None]
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Sequence

from loopml.errors import UsageError
from loopml.storage import Event, Fetch, Merge, TileWrite, id_order


class MemoryOnlineStore:
    """An online store in this process's memory. One lock makes every call atomic, as a
    transaction does in SQLite; a failed merge leaves tiles and watermark as they were."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._latest: dict[str, dict[str, tuple[float, bytes]]] = {}
        self._tiles: dict[str, dict[tuple[str, int], bytes]] = {}
        self._marks: dict[str, str] = {}
        self._generations: dict[str, int] = {}
        self._clock = itertools.count(1)  # one counter for all tables: a drop never goes back

    def _moved(self, table: str) -> None:
        self._generations[table] = next(self._clock)

    def put_latest(self, table: str, rows: Sequence[tuple[str, float, bytes]]) -> int:
        checked = []
        for key, ts, value in rows:
            ts = float(ts)
            if math.isnan(ts):
                raise UsageError(f"online store table {table!r}: key {key!r} has a NaN time")
            checked.append((key, ts, bytes(value)))
        with self._lock:
            held = self._latest.setdefault(table, {})
            changed = 0
            for key, ts, value in checked:
                old = held.get(key)
                if old is None or ts >= old[0]:
                    held[key] = (ts, value)
                    changed += 1
            if changed:
                self._moved(table)
            return changed

    def get_latest(self, table: str, keys: Sequence[str]) -> list[tuple[float, bytes] | None]:
        with self._lock:
            held = self._latest.get(table, {})
            return [held.get(k) for k in keys]

    def merge_tiles(
        self,
        table: str,
        tiles: Sequence[TileWrite],
        merge: Merge,
        *,
        mark: tuple[str, str] | None = None,
    ) -> None:
        with self._lock:
            held = self._tiles.get(table, {})
            staged: dict[tuple[str, int], bytes] = {}
            for tile in tiles:  # computed aside first: an exception changes nothing
                where = (tile.key, int(tile.start))
                staged[where] = merge(staged.get(where, held.get(where)), tile.value)
            if staged:
                self._tiles.setdefault(table, {}).update(staged)
                self._moved(table)
            if mark is not None:
                self._marks[mark[0]] = mark[1]

    def get_tiles(self, table: str, key: str, starts: Sequence[int]) -> list[bytes | None]:
        with self._lock:
            held = self._tiles.get(table, {})
            return [held.get((key, int(s))) for s in starts]

    def fetch(
        self, request: Fetch
    ) -> tuple[list[tuple[float, bytes] | None], list[list[bytes | None]]]:
        with self._lock:
            latest = [self.get_latest(t, [k])[0] for t, k in request.latest]
            tiles = [self.get_tiles(t, k, s) for t, k, s in request.tiles]
            return latest, tiles

    def generations(self, tables: Sequence[str]) -> list[int]:
        with self._lock:
            return [self._generations.get(t, 0) for t in tables]

    def is_empty(self, table: str) -> bool:
        with self._lock:
            return not self._latest.get(table) and not self._tiles.get(table)

    def get_mark(self, name: str) -> str | None:
        with self._lock:
            return self._marks.get(name)

    def drop_table(self, table: str) -> None:
        with self._lock:
            self._latest.pop(table, None)
            self._tiles.pop(table, None)
            self._moved(table)

    def close(self) -> None:
        pass


class _Group:
    def __init__(self) -> None:
        self.next = 0  # index of the first entry never delivered to the group
        self.pending: dict[str, tuple[str, float]] = {}  # id -> (consumer, delivered at)


class MemoryEventLog:
    """An event log in this process's memory with the semantics of Redis Streams (and of the
    SQLite log): consumer groups, pending entries re-delivered first, claims of idle entries
    and blocking reads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._streams: dict[str, list[Event]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._last = (0, 0)

    def _new_id(self) -> str:
        ms = int(time.time() * 1000)
        last_ms, seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, seq + 1)
        return f"{self._last[0]}-{self._last[1]}"

    def append(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        _named(stream=stream)
        with self._cond:
            entries = self._streams.setdefault(stream, [])
            ids = []
            for payload in payloads:
                event = Event(self._new_id(), bytes(payload))
                entries.append(event)
                ids.append(event.id)
            if ids:
                self._cond.notify_all()
            return ids

    def read(
        self, stream: str, group: str, consumer: str, *, count: int = 1000, block_ms: int = 0
    ) -> list[Event]:
        _named(stream=stream, group=group, consumer=consumer)
        if count < 1:
            raise UsageError(f"read count must be at least 1, not {count}")
        deadline = time.monotonic() + block_ms / 1000
        with self._cond:
            g = self._groups.setdefault((stream, group), _Group())
            entries = self._streams.get(stream, [])
            mine = [i for i, (who, _) in g.pending.items() if who == consumer]
            if mine:
                by_id = {e.id: e for e in entries}
                return [by_id[i] for i in sorted(mine, key=id_order)[:count]]
            while g.next >= len(self._streams.get(stream, [])):
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
                g = self._groups.setdefault((stream, group), _Group())
            entries = self._streams[stream]
            taken = entries[g.next : g.next + count]
            g.next += len(taken)
            now = time.monotonic()
            for e in taken:
                g.pending[e.id] = (consumer, now)
            return list(taken)

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        for i in ids:
            try:
                id_order(i)
            except ValueError:
                raise UsageError(f"{i!r} is not an event id (like 1700000000000-0)") from None
        with self._cond:
            g = self._groups.get((stream, group))
            if g is None:
                return 0
            return sum(g.pending.pop(i, None) is not None for i in dict.fromkeys(ids))

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int) -> list[Event]:
        with self._cond:
            g = self._groups.get((stream, group))
            if g is None:
                return []
            now = time.monotonic()
            idle = sorted(
                (
                    i
                    for i, (who, at) in g.pending.items()
                    if who != consumer and (now - at) * 1000 >= min_idle_ms
                ),
                key=id_order,
            )
            by_id = {e.id: e for e in self._streams.get(stream, [])}
            for i in idle:
                g.pending[i] = (consumer, now)
            return [by_id[i] for i in idle]

    def pending(self, stream: str, group: str) -> int:
        with self._cond:
            g = self._groups.get((stream, group))
            return len(g.pending) if g is not None else 0

    def length(self, stream: str) -> int:
        with self._cond:
            return len(self._streams.get(stream, []))

    def delete_stream(self, stream: str) -> None:
        with self._cond:
            self._streams.pop(stream, None)
            for key in [k for k in self._groups if k[0] == stream]:
                del self._groups[key]

    def close(self) -> None:
        pass


def _named(**names: str) -> None:
    for what, name in names.items():
        if not name:
            raise UsageError(f"an event {what} needs a name")
