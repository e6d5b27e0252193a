"""The online path: materialize lookups and tiles into the online store, and compute the feature
vector of one request with the same definitions (and the same expression evaluator) as the
training set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data import fetch_arrow
from loopml.errors import UsageError
from loopml.features._definitions import FeatureSet, Lookup, Window
from loopml.features._expr import ExprType
from loopml.features._flags import (
    FROM_CACHE,
    NEWER_THAN_EVENT,
    OLDER_THAN_TTL,
    STALE_STORE,
    add_flag,
)
from loopml.features._keys import encode_key
from loopml.features._offline import TS_US, window_events
from loopml.features._tiles import combine, merge_tile, tile_starts, tiles_of
from loopml.storage import Fetch, OnlineStore, TileWrite

MARK_LOOKUP = "materialized:lookup:{name}"
MARK_TILES = "materialized:tiles:{name}:{batch}"


_MAX_MICROS = 253_402_300_799 * 1_000_000  # 9999-12-31T23:59:59Z
_INT64 = 2**63


def to_micros(value: Any) -> int | None:
    """A timestamp given as an ISO string, a datetime, epoch seconds (a float, or an integer
    below 1e11) or epoch microseconds (an integer from 1e11), as epoch microseconds (naive
    values are UTC)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        # Integers of 1e11 and more are microseconds (as loopml writes them); smaller ones are
        # seconds (1e11 seconds is the year 5138).
        micros = (
            (value if abs(value) >= 10**11 else value * 1_000_000)
            if isinstance(value, int)
            else value * 1_000_000
        )
        if not -_MAX_MICROS <= micros <= _MAX_MICROS:  # also refuses inf and NaN
            raise ValueError(f"{value!r} is outside the years 1 to 9999")
        return round(micros)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return round(aware.timestamp() * 1_000_000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()) * 1_000_000
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        return to_micros(datetime.fromisoformat(text))
    raise ValueError(f"{value!r} is not a timestamp")


_MISSING: Any = object()


def _converter(name: str, kind: ExprType) -> Callable[[Any], Any]:
    """``_convert`` for one request field, with the common well-typed values answered first
    (a request path converts every field of every request)."""
    if kind == "string":
        return lambda v: v if type(v) is str or v is None else _convert(name, kind, v)
    if kind == "int":
        lo, hi = -_INT64, _INT64
        return lambda v: v if type(v) is int and lo <= v < hi else _convert(name, kind, v)
    if kind == "float":
        return lambda v: v if type(v) is float and math.isfinite(v) else _convert(name, kind, v)
    if kind == "timestamp":
        # The same instants come again and again (the events of one hour, a user's session):
        # parsed ISO strings are kept, a few thousand at most.
        seen: dict[str, int | None] = {}

        def timestamp(v: Any) -> Any:
            if type(v) is str:
                got = seen.get(v, _MISSING)
                if got is _MISSING:
                    got = _convert(name, kind, v)
                    if len(seen) >= 4096:
                        seen.clear()
                    seen[v] = got
                return got
            return _convert(name, kind, v)

        return timestamp
    return lambda v: _convert(name, kind, v)


def _convert(name: str, kind: ExprType, value: Any) -> Any:
    if value is None:
        return None
    try:
        if kind == "int":
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if not -_INT64 <= value < _INT64:
                raise ValueError
            return int(value)
        if kind == "float":
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind == "string":
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind in ("timestamp", "duration"):
            return to_micros(value) if kind == "timestamp" else int(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"request field {name!r}: {value!r} is not a valid {kind}",
            details={"field": name, "expected": kind},
        ) from None
    return value


class OnlineFeatures:
    """Feature vectors for requests, from the online store.

    What "online" means for a request with an event time ``t``: the store holds each entity's
    latest lookup value and every window tile. Window values are combined from the tiles that
    ended by ``t``, so they are as of ``t`` whenever the store holds the events up to it. A
    lookup value is used only when it is as of ``t``: its time is not after ``t`` and not older
    than the lookup's TTL before it. Otherwise its features are null and the row says why in
    ``_flags`` (``newer_than_event``, ``older_than_ttl``; see :mod:`loopml.features._flags`):
    the value as of ``t`` is not in the store, and the future one is never used. So a request
    gets the batch (point-in-time) answer whenever the store can give it, and says so when not.
    """

    def __init__(self, fs: FeatureSet, store: OnlineStore, *, cache_seconds: float = 0.0) -> None:
        """``cache_seconds`` > 0 keeps what the store returned (a lookup's row, a window's combined
        values for one entity and window end) that long in this process: requests for the same
        entity within it read the store once. Every request reads the store's generations of
        its tables (one small read) and uses a kept value only if its table has not changed
        since: a materialization or a stream micro-batch is seen by the next request."""
        self.fs = fs
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str, int], tuple[float, int, Any]] = {}
        self._converters = [(n, _converter(n, fs.features[n].type)) for n in fs.request]
        self._lookups = [
            (lk, int(lk.ttl.total_seconds() * 1_000_000) if lk.ttl is not None else None)
            for lk in fs.lookups.values()
        ]
        self._windows = list(fs.windows.values())
        self._tables = [lk.table for lk in fs.lookups.values()] + [w.table for w in self._windows]
        self._names = [lk.name for lk in fs.lookups.values()] + [w.name for w in self._windows]
        # Lookups and windows whose table the store holds nothing of (see check_store).
        self.unwritten: frozenset[str] = frozenset()
        self._written: set[str] = set()

    def check_store(self) -> list[str]:
        """The lookups and windows the online store holds nothing for (never materialized),
        remembered so that answers flag them ``stale_store``. A table found written is not
        looked at again; one found empty is checked by its generation first (one small read),
        and only when that never moved, by looking for a row."""
        pending = [
            (name, table)
            for name, table in zip(self._names, self._tables, strict=True)
            if name not in self._written
        ]
        if not pending:
            return []
        gens = self.store.generations([table for _, table in pending])
        empty = []
        for (name, table), gen in zip(pending, gens, strict=True):
            if gen == 0 and self.store.is_empty(table):
                empty.append(name)
            else:
                self._written.add(name)
        self.unwritten = frozenset(empty)
        return empty

    # --------------------------------------------------------------------------- request path

    def vector(self, request: Mapping[str, Any], *, at: Any = None) -> dict[str, Any]:
        """Every feature for one request: request fields, lookups, window aggregates, derived.

        ``request`` holds the request features (missing ones are null). The event time is the
        spec's (computed from the request), or ``at``, or now. Timestamps come back as epoch
        microseconds. ``_flags`` is there when a value was not as of the event time or came
        from the cache.
        """
        return self.complete(self.request_row(request), at=at)

    def request_row(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The request features typed (a :class:`UsageError` names a bad field) and the derived
        features that need only them: everything known without the online store."""
        row: dict[str, Any] = {
            name: convert(request.get(name)) for name, convert in self._converters
        }
        for name, expr in self.fs.stage1:
            row[name] = expr.row(row)
        return row

    def complete(self, row: dict[str, Any], *, at: Any = None) -> dict[str, Any]:
        """Finish a :meth:`request_row`: lookups, windows, the other derived features."""
        row.pop("_flags", None)
        t = self._event_time(row, at)
        row["_event_time"] = t
        self._stage2(row, t)
        for name, expr in self.fs.stage3:
            row[name] = expr.row(row)
        return row

    def values(self, request: Mapping[str, Any], *, at: Any = None) -> list[Any]:
        """The model's inputs for one request, in the vector's order."""
        row = self.vector(request, at=at)
        return [row[n] for n in self.fs.vector]

    def _event_time(self, row: Mapping[str, Any], at: Any) -> int:
        name = self.fs.event_time or self.fs.event_time_column
        t = row.get(name) if name else None
        if t is None:
            t = to_micros(at) if at is not None else None
        return int(t) if t is not None else int(time.time() * 1_000_000)

    def _stage2(self, row: dict[str, Any], t: int) -> None:
        cached = self.cache_seconds > 0
        now = 0.0
        gens: dict[str, int] = {}
        if cached:
            now = time.monotonic()
            # Read before the values: a write landing in between leaves what is kept below
            # stamped with the older generation, so it is read again next time, never kept stale.
            gens = dict(zip(self._tables, self.store.generations(self._tables), strict=True))
        cache = self._cache
        latest_keys: list[tuple[str, str]] = []
        lookup_slots: list[tuple[Lookup, int | None, str]] = []
        lookup_values: list[tuple[Lookup, int | None, Any, bool]] = []
        for lk, ttl_us in self._lookups:
            key = encode_key([row[k] for k in lk.event_keys])
            if key is None:
                for feat in lk.columns:
                    row[feat] = None
                continue
            if cached:
                hit = cache.get((lk.table, key, 0))
                if hit is not None and hit[0] > now and hit[1] == gens[lk.table]:
                    lookup_values.append((lk, ttl_us, hit[2], True))
                    continue
            latest_keys.append((lk.table, key))
            lookup_slots.append((lk, ttl_us, key))
        tile_reqs: list[tuple[str, str, list[int]]] = []
        window_slots: list[tuple[Window, list[int], int, str]] = []
        for w in self._windows:
            end = (t // w.tile_us) * w.tile_us // 1_000_000
            key = encode_key([row[k] for k in w.event_keys])
            if key is None:
                starts = tile_starts(w, end)
                row.update(combine(w, [None] * len(starts), starts, end))
                continue
            if cached:
                hit = cache.get((w.table, key, end))
                if hit is not None and hit[0] > now and hit[1] == gens[w.table]:
                    row.update(hit[2])
                    add_flag(row, w.name, FROM_CACHE)
                    continue
            starts = tile_starts(w, end)
            tile_reqs.append((w.table, key, starts))
            window_slots.append((w, starts, end, key))
        if latest_keys or tile_reqs:
            latest, tiles = self.store.fetch(Fetch(latest=latest_keys, tiles=tile_reqs))
        else:
            latest, tiles = [], []
        for (lk, ttl_us, key), got in zip(lookup_slots, latest, strict=True):
            values = orjson.loads(got[1]) if got is not None else None
            if cached:
                self._remember((lk.table, key, 0), gens[lk.table], values, now)
            lookup_values.append((lk, ttl_us, values, False))
        for lk, ttl_us, values, from_cache in lookup_values:
            if from_cache:
                add_flag(row, lk.name, FROM_CACHE)
            if values is not None and lk.time_column is not None:
                ts = values["_ts"]
                if ts > t:
                    add_flag(row, lk.name, NEWER_THAN_EVENT)
                    values = None
                elif ttl_us is not None and ts < t - ttl_us:
                    add_flag(row, lk.name, OLDER_THAN_TTL)
                    values = None
            for feat in lk.columns:
                row[feat] = values.get(feat) if values is not None else None
        for (w, starts, end, key), got_tiles in zip(window_slots, tiles, strict=True):
            combined = combine(w, got_tiles, starts, end)
            if cached:
                self._remember((w.table, key, end), gens[w.table], combined, now)
            row.update(combined)
        if self.unwritten:
            for name in self._names:
                if name in self.unwritten:
                    add_flag(row, name, STALE_STORE)

    def _remember(self, key: tuple[str, str, int], generation: int, value: Any, now: float) -> None:
        if len(self._cache) > 100_000:  # bounded: entities x window ends seen in a second
            self._cache.clear()
        self._cache[key] = (now + self.cache_seconds, generation, value)

    # ---------------------------------------------------------------------------- materialize

    def materialize_lookup(self, con: duckdb.DuckDBPyConnection, lk: Lookup) -> int:
        """Write the latest row per entity of a lookup's source (from the views on ``con``)."""
        keys = ", ".join(f'"{k}"' for k in lk.source_keys)
        cols = ", ".join(
            f'"{c}"' for c in dict.fromkeys(lk.source_keys + list(lk.columns.values()))
        )
        if lk.time_column is None:
            sql = (
                f'SELECT {cols}, NULL::TIMESTAMPTZ AS _ts FROM "{lk.source}" '
                f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _batch DESC) = 1"
            )
        else:
            ts = f'"{lk.time_column}"'
            sql = (
                f'SELECT {cols}, {ts}::TIMESTAMPTZ AS _ts FROM "{lk.source}" WHERE {ts} IS NOT NULL '
                f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {ts} DESC, _batch DESC) = 1"
            )
        table = fetch_arrow(con.sql(sql))
        return self.store.put_latest(lk.table, lookup_rows(lk, table))

    def materialize_tiles(
        self, con: duckdb.DuckDBPyConnection, w: Window, batch: str, source: pa.Table
    ) -> int:
        """Fold one lake batch's events into the window's tiles, once (a mark per batch)."""
        mark = MARK_TILES.format(name=w.name, batch=batch)
        if self.store.get_mark(mark) is not None:
            return 0
        writes = [TileWrite(k, s, v) for k, s, v in tiles_of(con, w, window_events(w, source))]
        self.store.merge_tiles(w.table, writes, merge_tile, mark=(mark, "1"))
        return len(writes)

    def apply_batch(self, source: str, batch: str, rows: pa.Table) -> tuple[int, int]:
        """Bring the store up to date with one landed batch of ``source``: its events folded
        into the window tiles (once: a mark per batch) and its newest row per entity into the
        lookups (the newest value wins, so repeating it is harmless). Returns (tiles, lookup
        values written)."""
        windows = [w for w in self.fs.windows.values() if w.source == source]
        lookups = [lk for lk in self.fs.lookups.values() if lk.source == source]
        tiles = written = 0
        if not windows and not lookups:
            return 0, 0
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")  # as the lake's connections: UTC date parts
            for w in windows:
                tiles += self.materialize_tiles(con, w, batch, rows.select(w.source_columns()))
            if lookups:
                if "_batch" not in rows.column_names:
                    rows = rows.append_column("_batch", pa.repeat(batch, rows.num_rows))
                con.register("_landed", rows)
                con.execute(f'CREATE VIEW "{source}" AS SELECT * FROM _landed')
                for lk in lookups:
                    written += self.materialize_lookup(con, lk)
        finally:
            con.close()
        return tiles, written


def lookup_rows(lk: Lookup, table: pa.Table) -> list[tuple[str, float, bytes]]:
    """Rows for ``put_latest``: (encoded key, ts in seconds, JSON of the features and ``_ts``)."""
    if table.num_rows == 0:
        return []
    ts = pc.cast(pc.cast(table["_ts"], TS_US), pa.int64()).to_pylist()
    keys = [table[k].to_pylist() for k in lk.source_keys]
    values = {feat: _plain_column(table[col]) for feat, col in lk.columns.items()}
    out = []
    timed = lk.time_column is not None
    for i in range(table.num_rows):
        key = encode_key([k[i] for k in keys])
        if key is None or (timed and ts[i] is None):
            continue  # a dated value without its date is never as of any time (nor offline)
        us = ts[i] if ts[i] is not None else 0
        payload = {feat: vals[i] for feat, vals in values.items()}
        payload["_ts"] = us
        out.append((key, us / 1_000_000, orjson.dumps(payload)))
    return out


def _plain_column(col: pa.ChunkedArray) -> list[Any]:
    """A column as JSON-ready Python values; timestamps as epoch microseconds."""
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        if pa.types.is_date(col.type):
            col = col.cast(pa.timestamp("s"))
        if col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return pc.cast(pc.cast(col, TS_US), pa.int64()).to_pylist()
    return col.to_pylist()
