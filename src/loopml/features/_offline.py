"""Point-in-time correct training sets, built in DuckDB over a lake snapshot.

For every labelled event: request features; lookups joined as of the event time with ``ASOF
LEFT JOIN`` (a value newer than the event is never seen, one older than its TTL is dropped);
window aggregates combined from tiles that ended before the event; derived features; the label,
kept only once it was available (with ``as_of``, only if it was available by then).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data import fetch_arrow
from loopml.errors import UsageError
from loopml.features._definitions import FeatureSet, Lookup, Window
from loopml.features._expression import Expression
from loopml.features._tiles import combine_columns, tile_sql

TS_US = pa.timestamp("us", tz="UTC")
META_SNAPSHOT = b"loopml.snapshot"
META_HASH = b"loopml.features_hash"
META_AS_OF = b"loopml.as_of"


@dataclass
class TrainingSet:
    """A training table and where it came from."""

    table: pa.Table
    snapshot: str | None
    definitions_hash: str
    as_of: datetime | None
    label: str | None
    vector: list[str]

    def with_metadata(self) -> pa.Table:
        meta = dict(self.table.schema.metadata or {})
        meta[META_SNAPSHOT] = (self.snapshot or "").encode()
        meta[META_HASH] = self.definitions_hash.encode()
        meta[META_AS_OF] = (self.as_of.isoformat() if self.as_of else "").encode()
        return self.table.replace_schema_metadata(meta)


def build(
    con: duckdb.DuckDBPyConnection,
    fs: FeatureSet,
    *,
    snapshot: str | None,
    as_of: datetime | None = None,
    labelled_only: bool = True,
    events: pa.Table | None = None,
) -> TrainingSet:
    """The training set of ``fs`` from the source views on ``con`` (a lake connection).

    With ``events`` (rows holding at least the request features), the features of those events
    instead: what batch prediction and precomputation use; no label is attached then.
    """
    if events is None:
        wanted = list(dict.fromkeys(fs.request + sorted(fs.label_columns())))
        if fs.event_time_column and fs.event_time_column not in wanted:
            wanted.append(fs.event_time_column)
        cols = ", ".join(f'"{c}"' for c in wanted)
        spine = fetch_arrow(con.sql(f'SELECT {cols} FROM "{fs.event_source}"'))
    else:
        missing = [c for c in fs.request if c not in events.column_names]
        if missing:
            raise UsageError(f"the rows lack request features: {', '.join(missing)}")
        spine = _typed_requests(events, fs)
    n = spine.num_rows
    table = _with_expressions(spine, fs.stage1, n)
    event_time = _event_time(table, fs)
    table = table.append_column("_event_time", event_time)
    table = table.append_column("_row", pa.array(np.arange(n, dtype=np.int64)))
    timed = bool(fs.event_time or fs.event_time_column)
    if as_of is not None and timed:
        table = table.filter(pc.less(table["_event_time"], pa.scalar(as_of, TS_US)))
        table = table.set_column(
            table.column_names.index("_row"),
            "_row",
            pa.array(np.arange(table.num_rows, dtype=np.int64)),
        )
    con.register("_spine", table)
    try:
        for lookup in fs.lookups.values():
            table = _join_lookup(con, table, lookup)
        for window in fs.windows.values():
            table = _join_window(con, table, window)
    finally:
        con.unregister("_spine")
    table = _with_expressions(table, fs.stage3, table.num_rows)
    if fs.label is not None and events is None:
        table = with_label(table, fs, as_of if timed else None, labelled_only)
    order = _column_order(table, fs)
    return TrainingSet(
        table=table.select(order),
        snapshot=snapshot,
        definitions_hash=fs.definitions_hash,
        as_of=as_of,
        label=fs.label.name if fs.label else None,
        vector=fs.vector,
    )


def _typed_requests(events: pa.Table, fs: FeatureSet) -> pa.Table:
    """The request columns of ``events``, cast to the types the definitions expect."""
    from loopml.features._expr import arrow_type

    columns = {}
    for name in fs.request:
        col = events[name]
        want = arrow_type(fs.features[name].type)
        if not col.type.equals(want):
            try:
                col = col.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise UsageError(
                    f"column {name!r} is {col.type}, and the feature is {fs.features[name].type}: {exc}"
                ) from None
        columns[name] = col
    return pa.table(columns)


def request_events(con: Any, fs: FeatureSet) -> pa.Table:
    """The event source's rows on ``con`` (a lake connection) as requests: the request columns,
    the features derived from them alone, and ``_event_time`` (UTC microseconds; null for
    untimed events). What precomputation and the serving advisor key their tables by."""
    wanted = [*fs.request, *([fs.event_time_column] if fs.event_time_column else [])]
    cols = ", ".join(f'"{c}"' for c in dict.fromkeys(wanted))
    events = fetch_arrow(con.sql(f'SELECT {cols} FROM "{fs.event_source}"'))
    events = _with_expressions(events, fs.stage1, events.num_rows)
    return events.append_column("_event_time", _event_time(events, fs))


def _with_expressions(table: pa.Table, exprs: list[tuple[str, Expression]], n: int) -> pa.Table:
    for name, expr in exprs:
        columns = {c: table[c] for c in expr.columns}
        table = table.append_column(name, expr.evaluate(columns, n))
    return table


def _event_time(table: pa.Table, fs: FeatureSet) -> pa.ChunkedArray:
    name = fs.event_time or fs.event_time_column
    if name is None:  # untimed events
        return pa.chunked_array([pa.nulls(table.num_rows, TS_US)])
    col = table[name]
    if pa.types.is_date(col.type):
        col = col.cast(pa.timestamp("s"))
    if col.type.tz is None:
        col = pc.assume_timezone(col, "UTC")
    return col.cast(TS_US)


def _keys_on(left: str, right: str, left_keys: list[str], right_keys: list[str]) -> str:
    return " AND ".join(
        f'{left}."{a}" = {right}."{b}"' for a, b in zip(left_keys, right_keys, strict=True)
    )


def _join_lookup(con: duckdb.DuckDBPyConnection, table: pa.Table, lk: Lookup) -> pa.Table:
    feats = list(lk.columns.items())
    picked = ", ".join(f'l."{col}" AS "{feat}"' for feat, col in feats)
    src_cols = ", ".join(
        f'"{c}"' for c in dict.fromkeys(lk.source_keys + list(lk.columns.values()))
    )
    on = _keys_on("s", "l", lk.event_keys, lk.source_keys)
    if lk.time_column is None:
        # A static table: one row per key (the last one landed wins, as online).
        keys = ", ".join(f'"{k}"' for k in lk.source_keys)
        sql = f"""
            SELECT s._row, {picked}
            FROM _spine s LEFT JOIN (
                SELECT {src_cols} FROM "{lk.source}"
                QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _batch DESC) = 1
            ) l ON {on}
            ORDER BY s._row"""
    else:
        ts = f'"{lk.time_column}"'
        sql = f"""
            SELECT s._row, {picked}, l.{ts}::TIMESTAMPTZ AS "_{lk.name}_ts"
            FROM _spine s ASOF LEFT JOIN (
                SELECT {src_cols}, {ts} FROM "{lk.source}" WHERE {ts} IS NOT NULL
            ) l ON {on} AND s._event_time >= l.{ts}
            ORDER BY s._row"""
    joined = fetch_arrow(con.sql(sql))
    if lk.time_column is None:
        for feat, _ in feats:
            table = table.append_column(feat, joined[feat])
        return table
    ts_col = joined[f"_{lk.name}_ts"].cast(TS_US)
    if lk.ttl is not None:
        oldest = pc.subtract(table["_event_time"], pa.scalar(lk.ttl, pa.duration("us")))
        fresh = pc.fill_null(pc.greater_equal(ts_col, oldest), False)
        cols = {
            feat: pc.if_else(fresh, joined[feat], pa.scalar(None, joined[feat].type))
            for feat, _ in feats
        }
        ts_col = pc.if_else(fresh, ts_col, pa.scalar(None, TS_US))
    else:
        cols = {feat: joined[feat] for feat, _ in feats}
    for feat, arr in cols.items():
        table = table.append_column(feat, arr)
    return table.append_column(f"_{lk.name}_ts", ts_col)


def _join_window(con: duckdb.DuckDBPyConnection, table: pa.Table, w: Window) -> pa.Table:
    events = _window_events(con, w)
    con.register("_events", events)
    try:
        tiles = fetch_arrow(con.sql(tile_sql(w, "_events")))
    finally:
        con.unregister("_events")
    tile_keys = _entity_strings([tiles[k] for k in w.source_keys])
    spine_keys = _entity_strings([table[k] for k in w.event_keys])
    universe = pc.unique(tile_keys)
    tiles = tiles.append_column("_code", pc.index_in(tile_keys, value_set=universe))
    tiles = tiles.set_column(
        tiles.column_names.index("_tile"), "_tile", pc.divide(tiles["_tile"], 1_000_000)
    )
    codes = pc.fill_null(pc.index_in(spine_keys, value_set=universe), -1).to_numpy()
    tile_us = w.tile_us
    t_us = pc.cast(table["_event_time"], pa.int64()).to_numpy(zero_copy_only=False)
    ends = (t_us // tile_us) * tile_us // 1_000_000
    values = combine_columns(w, tiles, np.asarray(codes, dtype=np.int64), ends)
    for agg in w.aggs:
        table = table.append_column(agg.feature, values[agg.feature])
    return table


def _entity_strings(columns: list[pa.ChunkedArray]) -> pa.ChunkedArray:
    """One key column: the value itself, or the parts joined, null when any part is null."""
    parts = [pc.cast(c, pa.string()) if not pa.types.is_string(c.type) else c for c in columns]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "\x1f")


def _window_events(con: duckdb.DuckDBPyConnection, w: Window) -> pa.Table:
    cols = ", ".join(f'"{c}"' for c in w.source_columns())
    source = fetch_arrow(con.sql(f'SELECT {cols} FROM "{w.source}"'))
    return window_events(w, source)


def window_events(w: Window, source: pa.Table) -> pa.Table:
    """Source rows as window events: the keys, ``_known`` (epoch microseconds) and the columns."""
    if w.time is not None:
        known = w.time.evaluate({c: source[c] for c in w.time.columns}, source.num_rows)
    else:
        assert w.time_column is not None
        known = source[w.time_column]
        if known.type.tz is None:
            known = pc.assume_timezone(known, "UTC")
    known_us = pc.cast(pc.cast(known, TS_US), pa.int64())
    out = {k: source[k] for k in w.source_keys}
    out["_known"] = known_us
    for c in w.columns:
        out[c] = source[c]
    return pa.table(out)


def with_label(
    table: pa.Table, fs: FeatureSet, as_of: datetime | None, labelled_only: bool
) -> pa.Table:
    """``table`` (the event columns the label reads, and ``_event_time``) with the label
    ``features.label`` defines and ``_label_available_at``, when it became known. With
    ``labelled_only``, only the rows that have a label (known by ``as_of``, if given)."""
    label = fs.label
    assert label is not None
    values = label.expr.evaluate({c: table[c] for c in label.expr.columns}, table.num_rows)
    if label.available_at is not None:
        available = label.available_at.evaluate(
            {c: table[c] for c in label.available_at.columns}, table.num_rows
        ).cast(TS_US)
    elif label.delay is not None:
        available = pc.add(table["_event_time"], pa.scalar(label.delay, pa.duration("us")))
    else:
        available = table["_event_time"]
    table = table.append_column(label.name, values).append_column("_label_available_at", available)
    if labelled_only:
        keep = pc.is_valid(table[label.name])
        if as_of is not None:
            keep = pc.and_(
                keep,
                pc.fill_null(
                    pc.less_equal(table["_label_available_at"], pa.scalar(as_of, TS_US)), False
                ),
            )
        table = table.filter(keep)
    return table


def _column_order(table: pa.Table, fs: FeatureSet) -> list[str]:
    """Audit columns (when each row's values were known), the features, the label. Columns read
    only to compute the label (an outcome recorded later) are left out: they are the future."""
    meta = ["_event_time"] + [f"_{n}_ts" for n, lk in fs.lookups.items() if lk.time_column]
    meta.append("_label_available_at")
    feats = list(fs.features)
    label = [fs.label.name] if fs.label is not None else []
    return [c for c in meta + feats + label if c in table.column_names]


def now_utc() -> datetime:
    return datetime.now(UTC)


def describe(ts: TrainingSet) -> dict[str, Any]:
    t = ts.table
    out: dict[str, Any] = {
        "rows": t.num_rows,
        "features": len([c for c in ts.vector if c in t.column_names]),
        "snapshot": ts.snapshot,
        "definitions_hash": ts.definitions_hash,
        "as_of": ts.as_of.isoformat() if ts.as_of else None,
        "label": ts.label,
    }
    if ts.label and ts.label in t.column_names and t.num_rows:
        col = t[ts.label]
        if pa.types.is_boolean(col.type):
            out["positive_rate"] = round(pc.mean(col.cast(pa.int64())).as_py() or 0.0, 4)
    return out
