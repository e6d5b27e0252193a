"""The online store role: latest feature values per entity, window tiles, precomputed
predictions. Small reads on the request path, so backends talk to their server directly (raw
``sqlite3``, ``redis-py``), not through an ORM.

Three kinds of data, each in a named *table* (a namespace, not an SQL table):

- **latest**: ``(key, ts, value)``; a write replaces the stored row only when its ``ts`` is at
  least the stored one, so out-of-order writes keep the newest. TTL is applied by the reader,
  who compares ``ts`` with the request time (the store never expires rows on its own).
- **tiles**: ``(key, start, value)`` for window aggregates; :meth:`OnlineStore.merge_tiles`
  folds new partial tiles into stored ones with a caller-given merge function, atomically with
  an optional watermark (so that a stream consumer applies each event exactly once).
- **marks**: named watermarks (``name -> value``).
- **generations**: per table, how many writes changed it, moved by every write in the same
  transaction. A reader that keeps values in memory (the serving feature cache) checks them:
  while a table's generation has not moved, what it read from the table is still what is stored.

Values are opaque bytes (loopml writes orjson). Keys are strings (loopml encodes composite
entity keys itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Merge = Callable[[bytes | None, bytes], bytes]


@dataclass(frozen=True)
class TileWrite:
    """A partial tile to fold into the stored one."""

    key: str
    start: int  # tile start, integer (loopml uses epoch seconds)
    value: bytes


@dataclass(frozen=True)
class Fetch:
    """What one request needs, read in one round trip by :meth:`OnlineStore.fetch`."""

    latest: Sequence[tuple[str, str]] = ()  # (table, key)
    tiles: Sequence[tuple[str, str, Sequence[int]]] = ()  # (table, key, tile starts)


@runtime_checkable
class OnlineStore(Protocol):
    def put_latest(self, table: str, rows: Sequence[tuple[str, float, bytes]]) -> int:
        """Upsert ``(key, ts, value)`` rows, keeping for each key the row with the largest ts
        (ties: the later write wins). Returns how many rows replaced or created a stored row."""
        ...

    def get_latest(self, table: str, keys: Sequence[str]) -> list[tuple[float, bytes] | None]:
        """``(ts, value)`` per key, in order; None where the key has no row."""
        ...

    def merge_tiles(
        self,
        table: str,
        tiles: Sequence[TileWrite],
        merge: Merge,
        *,
        mark: tuple[str, str] | None = None,
    ) -> None:
        """For every tile: ``stored = merge(stored_or_None, tile.value)``; and, when ``mark`` is
        given, set watermark ``mark[0]`` to ``mark[1]``. All of it or none of it, even with other
        writers on the same tiles. The same (key, start) may appear several times in ``tiles``:
        they are merged in order."""
        ...

    def get_tiles(self, table: str, key: str, starts: Sequence[int]) -> list[bytes | None]:
        """The stored value of each tile start (None where there is none), in order."""
        ...

    def fetch(
        self, request: Fetch
    ) -> tuple[list[tuple[float, bytes] | None], list[list[bytes | None]]]:
        """Everything a request needs, in one round trip where the backend allows it:
        ``get_latest`` for each (table, key) and ``get_tiles`` for each (table, key, starts)."""
        ...

    def generations(self, tables: Sequence[str]) -> list[int]:
        """For each table, in order, how many writes changed it (0: none yet). Every
        ``put_latest`` that changed a row, ``merge_tiles`` with tiles and ``drop_table`` of a
        table moves its generation, atomically with (or after) the write."""
        ...

    def is_empty(self, table: str) -> bool:
        """Whether the table holds no latest row and no tile (never written, or dropped)."""
        ...

    def get_mark(self, name: str) -> str | None: ...

    def drop_table(self, table: str) -> None:
        """Delete every latest row and tile of a table."""
        ...

    def close(self) -> None: ...
