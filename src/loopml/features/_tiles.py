"""Window tiles: the one representation of window aggregates that both paths combine.

A tile holds, for the events of one entity whose known time falls in ``[start, start + tile)``:
the event count, and for each aggregated column its non-null count, sum, min, max and last value
(the value with the latest known time; ties broken by the larger value). Tiles are computed by
DuckDB from Arrow tables (offline, and online from lake batches and stream micro-batches alike),
merged online with :func:`merge_tile`, and combined into window values with :func:`combine`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError
from loopml.features._definitions import Window
from loopml.features._keys import encode_key

# Layout of a tile value (a JSON list): [n, then per column: cnt, sum, min, max, last, last_t].
PER_COLUMN = 6


def tile_sql(window: Window, events: str) -> str:
    """SQL computing the tiles of ``events`` (a relation with the entity keys, ``_known`` in
    microseconds, and the aggregated columns). Events without a known time or with a null key
    never count: they did not happen, or belong to no entity."""
    keys = ", ".join(f'"{k}"' for k in window.source_keys)
    not_null = " AND ".join(
        [f'"{k}" IS NOT NULL' for k in window.source_keys] + ["_known IS NOT NULL"]
    )
    parts = [
        f"{keys}",
        # The tile's start at or before the event: DuckDB's integer // and % truncate toward
        # zero, which would put an event before 1970 in the tile after its own.
        f"_known - (_known % {window.tile_us} + {window.tile_us}) % {window.tile_us} AS _tile",
        "count(*) AS _n",
    ]
    for i, col in enumerate(window.columns):
        c = f'"{col}"'
        parts += [
            f"count({c}) AS c{i}",
            f"sum({c})::DOUBLE AS s{i}",
            f"min({c}) AS mn{i}",
            f"max({c}) AS mx{i}",
            f"arg_max({c}, struct_pack(t := _known, v := {c})) FILTER (WHERE {c} IS NOT NULL) AS l{i}",
            f"max(_known) FILTER (WHERE {c} IS NOT NULL) AS lt{i}",
        ]
    return f"SELECT {', '.join(parts)} FROM {events} WHERE {not_null} GROUP BY ALL"


def tiles_of(
    con: duckdb.DuckDBPyConnection, window: Window, events: pa.Table
) -> list[tuple[str, int, bytes]]:
    """Tiles of an Arrow table of events as ``(entity key, start in epoch seconds, value)``."""
    con.register("_tile_events", events)
    try:
        rows = con.execute(tile_sql(window, "_tile_events")).fetchall()
    finally:
        con.unregister("_tile_events")
    nk = len(window.source_keys)
    out = []
    for row in rows:
        key = encode_key(row[:nk])
        assert key is not None  # null keys are filtered out in SQL
        start = int(row[nk]) // 1_000_000
        out.append((key, start, orjson.dumps(_unpack_last(row[nk + 1 :]))))
    return out


def _unpack_last(values: Sequence[Any]) -> list[Any]:
    # DuckDB returns arg_max over a struct as the value itself; keep the list flat and plain.
    return [v["v"] if isinstance(v, dict) and "v" in v else v for v in values]


def merge_tile(stored: bytes | None, new: bytes) -> bytes:
    """Fold a partial tile into a stored one (commutative and associative, so events may arrive
    in any order and in any grouping)."""
    if stored is None:
        return new
    a, b = orjson.loads(stored), orjson.loads(new)
    out = [a[0] + b[0]]
    for i in range(1, len(a), PER_COLUMN):
        ca, sa, mna, mxa, la, lta = a[i : i + PER_COLUMN]
        cb, sb, mnb, mxb, lb, ltb = b[i : i + PER_COLUMN]
        out += [
            ca + cb,
            _add(sa, sb),
            _pick(mna, mnb, min),
            _pick(mxa, mxb, max),
            *_later((la, lta), (lb, ltb)),
        ]
    return orjson.dumps(out)


def _add(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _pick(a: Any, b: Any, f: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return f(a, b)


def _later(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    if a[1] is None:
        return b
    if b[1] is None:
        return a
    return max(a, b, key=lambda x: (x[1], x[0]))


def combine(
    window: Window, tiles: Sequence[bytes | None], starts: Sequence[int], end: int
) -> dict[str, Any]:
    """The window features at a request whose window ends (exclusive) at ``end`` (epoch
    seconds, a tile boundary), from the stored tiles at ``starts`` (ascending).

    Tiles are added in ascending start order: the same order, so the same floating-point sums,
    as :func:`combine_columns` offline.
    """
    decoded = [(s, orjson.loads(t)) for s, t in zip(starts, tiles, strict=True) if t is not None]
    out: dict[str, Any] = {}
    by_window: dict[int, list[Any]] = {}
    for agg in window.aggs:
        width = int(agg.window.total_seconds())
        inside = by_window.get(width)
        if inside is None:
            begin = end - width
            inside = by_window[width] = [v for s, v in decoded if begin <= s < end]
        if agg.agg == "count":
            out[agg.feature] = sum(v[0] for v in inside)
            continue
        i = 1 + PER_COLUMN * window.columns.index(agg.column or "")
        present = [v[i : i + PER_COLUMN] for v in inside if v[i]]
        if not present:
            out[agg.feature] = None
        elif agg.agg == "sum":
            out[agg.feature] = sum(p[1] for p in present)
        elif agg.agg == "mean":
            out[agg.feature] = sum(p[1] for p in present) / sum(p[0] for p in present)
        elif agg.agg == "min":
            out[agg.feature] = min(p[2] for p in present)
        elif agg.agg == "max":
            out[agg.feature] = max(p[3] for p in present)
        else:  # last
            out[agg.feature] = max(((p[4], p[5]) for p in present), key=lambda x: (x[1], x[0]))[0]
    return out


def combine_columns(
    window: Window, tiles: pa.Table, codes: np.ndarray, ends: np.ndarray
) -> dict[str, pa.Array]:
    """Window features for many requests at once, with the arithmetic of :func:`combine`.

    ``tiles`` has ``_code`` (the entity, as an integer), ``_tile`` (start, epoch seconds) and the
    tile columns of :func:`tile_sql`; ``codes`` and ``ends`` give each request's entity (-1: none)
    and window end (epoch seconds). Tiles are added in ascending start order, as online, so float
    sums come out bit for bit the same.
    """
    tiles = tiles.sort_by([("_code", "ascending"), ("_tile", "ascending")])
    tile_code = tiles["_code"].to_numpy().astype(np.int64)
    start = tiles["_tile"].to_numpy().astype(np.int64)
    span = int(window.tile.total_seconds())
    slot, order_key, n_slots = _search_keys(window, tile_code, start)
    has = codes >= 0
    base = np.where(has, codes, 0).astype(np.int64) * n_slots
    hi = np.searchsorted(order_key, base + slot(ends), side="left")
    n_all = tiles["_n"].to_numpy().astype(np.int64)
    out: dict[str, pa.Array] = {}
    cols: dict[int, dict[str, np.ndarray]] = {}

    def col(j: int) -> dict[str, np.ndarray]:
        if j not in cols:
            cols[j] = {
                "c": tiles[f"c{j}"].to_numpy().astype(np.int64),
                "s": tiles[f"s{j}"].fill_null(0.0).to_numpy().astype(np.float64),
                "mn": tiles[f"mn{j}"],
                "mx": tiles[f"mx{j}"],
                "l": tiles[f"l{j}"],
                "lt": tiles[f"lt{j}"].fill_null(-(2**62)).to_numpy().astype(np.int64),
            }
        return cols[j]

    for agg in window.aggs:
        width = int(agg.window.total_seconds())
        lo = np.searchsorted(order_key, base + slot(ends - width), side="left")
        lo = np.where(has, lo, hi)
        steps = width // span
        if agg.agg == "count":
            total = np.zeros(len(codes), dtype=np.int64)
            for k in range(steps):
                idx = lo + k
                ok = idx < hi
                total += np.where(
                    ok, n_all[np.minimum(idx, len(n_all) - 1)] if len(n_all) else 0, 0
                )
            out[agg.feature] = pa.array(total)
            continue
        j = window.columns.index(agg.column or "")
        c = col(j)
        cnt = np.zeros(len(codes), dtype=np.int64)
        acc = np.zeros(len(codes), dtype=np.float64)
        best_i = np.full(len(codes), -1, dtype=np.int64)
        last = len(n_all) - 1
        for k in range(steps):
            idx = np.minimum(lo + k, max(last, 0))
            ok = (lo + k < hi) & (c["c"][idx] > 0) if len(n_all) else np.zeros(len(codes), bool)
            cnt += np.where(ok, c["c"][idx], 0)
            acc = np.where(ok, acc + c["s"][idx], acc)
            if agg.agg in ("min", "max", "last"):
                best_i = _better(agg.agg, best_i, np.where(ok, idx, -1), c)
        present = cnt > 0
        if agg.agg == "sum":
            out[agg.feature] = pa.array(acc, mask=~present)
        elif agg.agg == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                out[agg.feature] = pa.array(acc / np.where(present, cnt, 1), mask=~present)
        else:
            source = {"min": c["mn"], "max": c["mx"], "last": c["l"]}[agg.agg]
            picked = source.take(pa.array(np.where(best_i >= 0, best_i, 0)))
            out[agg.feature] = pc.if_else(
                pa.array(best_i >= 0), picked, pa.scalar(None, picked.type)
            )
    return out


def _search_keys(
    window: Window, tile_code: np.ndarray, start: np.ndarray
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, int]:
    """Sorted search keys of the tiles (entity, then time), the function giving a request
    time's key within its entity, and the keys per entity.

    Each entity owns a range of ``n_slots`` keys, one per tile position from ``longest`` before
    the first tile to ``longest`` after the last; a request time outside that range is moved to
    its edge (its windows hold no tile either way). So neither a time before 1970 nor one
    centuries from the data can carry a search into a neighbouring entity's range.
    """
    span = int(window.tile.total_seconds())
    longest = int(window.windows[-1].total_seconds())
    first = int(start.min()) if len(start) else 0
    last = int(start.max()) if len(start) else 0
    floor, ceil = first - longest, last + span + longest
    n_slots = (ceil - floor) // span + 1
    if (int(tile_code.max(initial=0)) + 2) * n_slots >= 2**62:
        raise UsageError(
            f"window {window.name!r}: {n_slots:,} tiles of {window.tile} per entity from the first "
            f"to the last event is too many to search; use a longer tile",
            details={"window": window.name},
        )

    def slot(t: np.ndarray) -> np.ndarray:
        # Ceiling division: the first tile whose start is at or after t (starts are multiples
        # of the span; window widths may not be).
        clipped = np.clip(t, floor, ceil)
        return -((floor - clipped) // span)

    return slot, tile_code * n_slots + (start - floor) // span, n_slots


def _better(kind: str, best: np.ndarray, cand: np.ndarray, c: dict[str, Any]) -> np.ndarray:
    """Elementwise: the tile index holding the better min/max/last of ``best`` and ``cand``."""
    if kind == "last":
        lt = c["lt"]
        values = c["l"]
    else:
        values = c["mn"] if kind == "min" else c["mx"]
    vals = values.to_numpy(zero_copy_only=False) if not isinstance(values, np.ndarray) else values
    b_ok, c_ok = best >= 0, cand >= 0
    bi, ci = np.where(b_ok, best, 0), np.where(c_ok, cand, 0)
    bv, cv = vals[bi], vals[ci]
    if kind == "min":
        take = c_ok & (~b_ok | (cv < bv))
    elif kind == "max":
        take = c_ok & (~b_ok | (cv > bv))
    else:
        bt, ct = lt[bi], lt[ci]
        take = c_ok & (~b_ok | (ct > bt) | ((ct == bt) & (cv > bv)))
    return np.where(take, cand, best)


def tile_starts(window: Window, end: int) -> list[int]:
    """The tile starts (epoch seconds) of the longest window ending at ``end``."""
    tile = int(window.tile.total_seconds())
    longest = int(window.windows[-1].total_seconds())
    return list(range(end - longest, end, tile))
