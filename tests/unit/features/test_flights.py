"""The flights features (the demo's definitions) on January 2013: the online path, fed the
events in time order, gives every training row value for value; no training row sees the future;
and the check that says so catches a plain join."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from loopml import Project
from loopml.features import _offline
from loopml.features._online import OnlineFeatures, lookup_rows
from loopml.features._tiles import merge_tile, tiles_of
from loopml.spec import SQLiteConfig
from loopml.storage import TileWrite, open_online
from tests.helpers import flights_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return flights_project(tmp_path_factory.mktemp("flights-features"), months=(1,))


@pytest.fixture(scope="module")
def training(project: Project) -> pa.Table:
    return project.features.build(labelled_only=False).table


def micros(v: Any) -> Any:
    if isinstance(v, datetime):
        return int(v.timestamp() * 1_000_000)
    return v


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return a == b or math.isclose(a, b, rel_tol=1e-12)
    return a == b


def test_online_replay_equals_training_rows(
    project: Project, training: pa.Table, tmp_path: Path
) -> None:
    fs = project.features.feature_set
    store = open_online(SQLiteConfig(path="parity.db"), root=tmp_path)
    online = OnlineFeatures(fs, store)
    con = duckdb.connect()
    # Planes are a static table: written once. Weather and departures are replayed in time order.
    with project.data.lake.connect() as lake:
        online.materialize_lookup(lake, fs.lookups["plane"])
        weather = _offline.fetch_arrow(
            lake.sql("SELECT *, time_hour AS _ts FROM weather ORDER BY time_hour")
        )
        flights = _offline.fetch_arrow(lake.sql("SELECT * FROM flights"))
    window = fs.windows["origin_departures"]
    events = _offline.window_events(window, flights)
    events = events.filter(pc.is_valid(events["_known"])).sort_by("_known")
    weather_t = pc.cast(pc.cast(weather["_ts"], _offline.TS_US), pa.int64()).to_numpy()
    known = events["_known"].to_numpy()

    rows = training.sort_by("_event_time")
    step = max(1, rows.num_rows // 1200)
    picked = rows.take(pa.array(range(0, rows.num_rows, step)))
    assert picked.num_rows >= 1000
    w_pos = e_pos = 0
    mismatches: list[str] = []
    compared = 0
    for r in picked.to_pylist():
        t = micros(r["_event_time"])
        w_end = int((weather_t <= t).sum())
        if w_end > w_pos:
            chunk = weather.slice(w_pos, w_end - w_pos)
            store.put_latest("lookup:weather", lookup_rows(fs.lookups["weather"], chunk))
            w_pos = w_end
        e_end = int((known <= t).sum())
        if e_end > e_pos:
            writes = [
                TileWrite(k, s, v)
                for k, s, v in tiles_of(con, window, events.slice(e_pos, e_end - e_pos))
            ]
            store.merge_tiles(window.table, writes, merge_tile)
            e_pos = e_end
        vector = online.vector({k: r[k] for k in fs.request})
        assert vector["_event_time"] == t
        for name in fs.features:
            compared += 1
            if not same(vector[name], micros(r[name])):
                mismatches.append(
                    f"flight {r['carrier']}{r['flight']} at {r['_event_time']}: {name} online {vector[name]!r} offline {r[name]!r}"
                )
    store.close()
    con.close()
    assert not mismatches, "\n".join(mismatches[:20])
    assert compared >= 1000 * len(fs.features)


def leaks(table: pa.Table, *, as_of: datetime | None = None) -> list[str]:
    """Every way a training row could see the future; empty when none does."""
    found = []
    rows = table.to_pylist()
    for r in rows:
        if r["_weather_ts"] is not None:
            if r["_weather_ts"] > r["_event_time"]:
                found.append(f"weather from {r['_weather_ts']} used at {r['_event_time']}")
            elif r["_event_time"] - r["_weather_ts"] > timedelta(hours=3):
                found.append(f"weather older than its TTL at {r['_event_time']}")
        if as_of is not None and r["delayed"] is not None and r["_label_available_at"] > as_of:
            found.append(f"label known at {r['_label_available_at']} used as of {as_of}")
    return found


def test_no_training_row_sees_the_future(project: Project) -> None:
    as_of = datetime(2013, 1, 20, tzinfo=UTC)
    ts = project.features.build(as_of=as_of)
    assert ts.table.num_rows > 10_000
    assert leaks(ts.table, as_of=as_of) == []
    assert pc.max(ts.table["_event_time"]).as_py() < as_of
    # Labels only once known: flights departing just before the cut-off have none yet.
    full = project.features.build(labelled_only=True)
    assert full.table.num_rows > ts.table.num_rows


def test_window_values_from_the_past_only(project: Project, training: pa.Table) -> None:
    """Recompute the 1-hour departures window by brute force for a sample of flights."""
    fs = project.features.feature_set
    window = fs.windows["origin_departures"]
    with project.data.lake.connect() as lake:
        flights = _offline.fetch_arrow(lake.sql("SELECT * FROM flights"))
    events = _offline.window_events(window, flights).to_pylist()
    by_origin: dict[str, list[int]] = {}
    for e in events:
        if e["_known"] is not None and e["origin"] is not None:
            by_origin.setdefault(e["origin"], []).append(e["_known"])
    tile = 300 * 1_000_000
    for r in training.take(pa.array(range(0, training.num_rows, 97))).to_pylist():
        t = micros(r["_event_time"])
        end = (t // tile) * tile
        expected = sum(
            1
            for k in by_origin.get(r["origin"], [])
            if end - 3600 * 1_000_000 <= (k // tile) * tile < end
        )
        assert r["origin_departures_1h"] == expected
        assert all(k < end for k in by_origin.get(r["origin"], []) if (k // tile) * tile < end)


def test_the_leak_check_catches_a_plain_join(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replace the as-of join by a plain join on the key (the latest weather whatever its time):
    the same check must now find leaks."""

    def plain_join(con: duckdb.DuckDBPyConnection, table: pa.Table, lk: Any) -> pa.Table:
        cols = ", ".join(f'"{c}" AS "{f}"' for f, c in lk.columns.items())
        joined = _offline.fetch_arrow(
            con.sql(f"""
            SELECT s._row, {cols}, l."{lk.time_column}"::TIMESTAMPTZ AS "_{lk.name}_ts"
            FROM _spine s LEFT JOIN (
                SELECT * FROM "{lk.source}" QUALIFY row_number() OVER (PARTITION BY origin ORDER BY "{lk.time_column}" DESC) = 1
            ) l USING (origin) ORDER BY s._row""")
        )
        for f in lk.columns:
            table = table.append_column(f, joined[f])
        return table.append_column(f"_{lk.name}_ts", joined[f"_{lk.name}_ts"].cast(_offline.TS_US))

    original = _offline._join_lookup
    monkeypatch.setattr(
        _offline,
        "_join_lookup",
        lambda con, table, lk: (
            plain_join(con, table, lk) if lk.name == "weather" else original(con, table, lk)
        ),
    )
    leaky = project.features.build(as_of=datetime(2013, 1, 20, tzinfo=UTC))
    assert leaks(leaky.table), "a plain join must be caught"
