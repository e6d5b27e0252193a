"""The online store follows the lake: once materialized, every landed batch (a file, a
release of quarantined rows) brings it up to date, and an ingest says what it did to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from loopml import Project
from tests.unit.features.test_point_in_time import PROFILES, SPEC, TRIPS, USERS
from tests.unit.features.test_stream import trips_file

REQUEST = {"id": 1000, "user": "d", "t": "2024-06-01T10:30:00Z", "amount": 1}


def ingested(make_project: Callable[..., Project], tmp_path: Path, spec: str = SPEC) -> Project:
    p = make_project(spec)
    for name, text in (("profiles", PROFILES), ("users", USERS), ("trips", TRIPS)):
        (tmp_path / f"{name}.csv").write_text(text)
        (r,) = p.data.ingest(name, [tmp_path / f"{name}.csv"])
        assert r.online is not None and r.online.status == "not_materialized"
        assert "loopml features materialize" in r.online.message
    return p


def test_each_landed_file_refreshes_a_materialized_online_store(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = ingested(make_project, tmp_path)
    p.features.materialize()
    before = p.features.vector(REQUEST)
    assert (before["n_1h"], before["info_country"]) == (0, None)

    path = trips_file(
        tmp_path,
        "june.csv",
        [(201, "d", "2024-06-01T10:00:00Z", 4), (202, "d", "2024-06-01T10:05:00Z", 6)],
    )
    (r,) = p.data.ingest("trips", [path])
    assert r.online is not None and r.online.status == "refreshed" and r.online.tiles == 1
    (tmp_path / "users2.csv").write_text("user,country\nd,IT\n")
    (u,) = p.data.ingest("users", [tmp_path / "users2.csv"])
    assert u.online is not None and (u.online.status, u.online.lookups) == ("refreshed", 1)

    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (o,) = p.data.ingest("other", [tmp_path / "other.csv"])
    assert o.online is None  # no feature reads it from the online store

    after = p.features.vector(REQUEST)  # no `features materialize` in between
    assert (after["n_1h"], after["total_1h"], after["info_country"]) == (2, 10.0, "IT")
    # A later materialize finds nothing left to fold in, and changes no value.
    assert p.features.materialize()["tiles"]["user_trips"] == 0
    assert p.features.vector(REQUEST) == after


def test_a_release_of_fixed_rows_refreshes_the_online_store(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    capped = SPEC.replace(
        "trips: {format: csv, timestamp: t, primary_key: [id]}",
        "trips: {format: csv, timestamp: t, primary_key: [id], "
        "schema: {columns: {amount: {max: 1000}}}}",
    )
    p = ingested(make_project, tmp_path, capped)
    for day in (2, 3, 4):
        rows = [
            (day * 100 + i, "z", f"2024-04-0{day}T{i // 6:02d}:{i % 6 * 10:02d}:00Z", 5.0)
            for i in range(60)
        ]
        p.data.ingest("trips", [trips_file(tmp_path, f"d{day}.csv", rows)])
    p.features.materialize()
    rows = [(460 + i, "z", f"2024-06-01T0{i // 6}:{i % 6 * 10:02d}:00Z", 5.0) for i in range(55)]
    rows += [(520 + i, "d", f"2024-06-01T10:0{i}:00Z", 5000.0) for i in range(5)]  # above max
    (r,) = p.data.ingest("trips", [trips_file(tmp_path, "june.csv", rows)])
    assert (r.rows_accepted, r.rows_quarantined) == (55, 5), r.reasons
    assert p.features.vector(REQUEST)["n_1h"] == 0

    fixed = make_project(capped.replace("max: 1000", "max: 10000"), folder=p.root.name)
    released = fixed.data.quarantine.release(r.quarantine_id, by="t")  # type: ignore[arg-type]
    assert (released.status, released.rows_accepted) == ("landed", 5)
    assert released.online is not None and released.online.status == "refreshed"
    assert fixed.features.vector(REQUEST)["n_1h"] == 5
