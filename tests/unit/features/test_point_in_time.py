"""Point-in-time correctness on a small, hand-computed case: as-of lookups with a TTL, static
lookups, tiled windows, derived features, labels and their availability; the same numbers online."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopml import Project
from loopml.errors import SpecError

SPEC = """\
project: pit
sources:
  trips: {format: csv, timestamp: t, primary_key: [id]}
  profiles: {format: csv, timestamp: updated, primary_key: [user, updated]}
  users: {format: csv, primary_key: [user]}
entities:
  user: [user]
features:
  event: {source: trips}
  request: [id, user, t, amount]
  lookups:
    profile: {source: profiles, entity: user, ttl: 2h, features: [score]}
    info: {source: users, entity: user, features: [country]}
  windows:
    user_trips:
      source: trips
      entity: user
      windows: [1h]
      tile: 10m
      prefix: ""
      aggregates: {n: count, total: sum(amount), biggest: max(amount), smallest: min(amount), latest: last(amount), avg: mean(amount)}
  derived:
    big: "amount > 100"
    score2: "coalesce(profile_score, 0) * 2"
  label: {name: fraud, expr: "flag", available_at: "done_at"}
"""

TRIPS = """id,user,t,amount,flag,done_at
1,a,2024-05-01T10:00:00Z,50,false,2024-05-01T10:30:00Z
2,a,2024-05-01T10:12:00Z,200,true,2024-05-01T13:00:00Z
3,a,2024-05-01T10:35:00Z,10,false,2024-05-01T11:00:00Z
4,b,2024-05-01T10:36:00Z,5,,2024-05-01T11:00:00Z
5,a,2024-05-01T11:20:00Z,70,true,2024-05-01T12:00:00Z
6,c,2024-05-01T11:21:00Z,1,false,2024-05-01T11:30:00Z
"""
PROFILES = """user,updated,score
a,2024-05-01T09:00:00Z,1.0
a,2024-05-01T10:30:00Z,2.0
a,2024-05-01T12:00:00Z,3.0
b,2024-05-01T07:00:00Z,9.0
"""
USERS = "user,country\na,FR\nb,DE\n"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture
def project(make_project: Callable[..., Project], tmp_path: Path) -> Project:
    p = make_project(SPEC)
    for name, text in (("trips", TRIPS), ("profiles", PROFILES), ("users", USERS)):
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        (r,) = p.data.ingest(name, [path])
        assert r.rows_quarantined == 0, r.reasons
    return p


EXPECTED = {
    # id: (profile_score, country, n, total, biggest, smallest, latest, avg)
    1: (1.0, "FR", 0, None, None, None, None, None),
    2: (1.0, "FR", 1, 50.0, 50, 50, 50, 50.0),  # window [09:10, 10:10): trip 1
    3: (2.0, "FR", 2, 250.0, 200, 50, 200, 125.0),  # [09:30, 10:30): trips 1, 2
    5: (2.0, "FR", 1, 10.0, 10, 10, 10, 10.0),  # [10:20, 11:20): trip 3; its own tile is excluded
    6: (None, None, 0, None, None, None, None, None),  # user c: unknown everywhere
}


def test_training_set_values(project: Project) -> None:
    ts = project.features.build()
    rows = {r["id"]: r for r in ts.table.to_pylist()}
    assert sorted(rows) == [1, 2, 3, 5, 6]  # trip 4 has no label yet
    for id_, (score, country, n, total, biggest, smallest, latest, avg) in EXPECTED.items():
        r = rows[id_]
        got = (
            r["profile_score"],
            r["info_country"],
            *(r[f"{a}_1h"] for a in ("n", "total", "biggest", "smallest", "latest", "avg")),
        )
        assert got == (score, country, n, total, biggest, smallest, latest, avg), id_
    assert rows[2]["big"] is True and rows[1]["score2"] == 2.0 and rows[6]["score2"] == 0.0
    assert [rows[i]["fraud"] for i in (1, 2, 3, 5, 6)] == [False, True, False, True, False]
    assert ts.snapshot is not None and len(ts.definitions_hash) == 64


def test_ttl_drops_stale_values(project: Project) -> None:
    ts = project.features.build(labelled_only=False)
    rows = {r["id"]: r for r in ts.table.to_pylist()}
    # user b's profile is 3h36 old at trip 4: older than the 2h TTL
    assert rows[4]["profile_score"] is None and rows[4]["_profile_ts"] is None
    assert rows[4]["info_country"] == "DE"


def test_as_of_keeps_only_labels_known_by_then(project: Project) -> None:
    ts = project.features.build(as_of=utc("2024-05-01T12:30:00Z"))
    assert sorted(r["id"] for r in ts.table.to_pylist()) == [1, 3, 5, 6]  # trip 2 known at 13:00
    early = project.features.build(as_of=utc("2024-05-01T10:40:00Z"))
    assert sorted(r["id"] for r in early.table.to_pylist()) == [
        1
    ]  # events before 10:40, labels by then


def test_no_value_from_after_the_event(project: Project) -> None:
    ts = project.features.build(labelled_only=False)
    for r in ts.table.to_pylist():
        if r["_profile_ts"] is not None:
            assert r["_profile_ts"] <= r["_event_time"]
        assert (
            r["_label_available_at"] is None
            or r["fraud"] is None
            or r["_label_available_at"] >= r["_event_time"]
        )


def test_lineage_in_the_parquet_file(project: Project, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    ts = project.features.build(out=tmp_path / "train.parquet")
    meta = pq.read_schema(tmp_path / "train.parquet").metadata
    assert meta[b"loopml.snapshot"].decode() == ts.snapshot
    assert meta[b"loopml.features_hash"].decode() == ts.definitions_hash


def test_online_vectors_equal_the_training_rows(project: Project) -> None:
    ts = project.features.build(labelled_only=False)
    project.features.materialize()
    # Online, each request sees only what was known at its time; the profiles source holds a
    # value from 12:00, so ask at times where the latest profile is already past (a replay would
    # feed them in order: see the flights parity test).
    fs = project.features.feature_set
    for r in ts.table.to_pylist():
        request = {k: r[k] for k in fs.request}
        online = project.features.vector(request)
        for agg in fs.windows["user_trips"].aggs:
            assert online[agg.feature] == r[agg.feature], (r["id"], agg.feature)
        assert online["info_country"] == r["info_country"]
        assert online["big"] == r["big"]


def bad(make_project: Callable[..., Project], tmp_path: Path, old: str, new: str) -> SpecError:
    p = make_project(SPEC.replace(old, new), folder=f"bad{abs(hash(new)) % 10**6}")
    for name, text in (("trips", TRIPS), ("profiles", PROFILES), ("users", USERS)):
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        p.data.ingest(name, [path])
    with pytest.raises(SpecError) as info:
        _ = p.features.feature_set
    return info.value


def test_bad_definitions_name_the_feature(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    err = bad(
        make_project,
        tmp_path,
        "request: [id, user, t, amount]",
        "request: [id, user, t, amount, amout]",
    )
    assert err.details["feature"] == "amout" and "did you mean 'amount'" in err.message
    err = bad(make_project, tmp_path, 'big: "amount > 100"', 'big: "user + 1"')
    assert err.details["feature"] == "big" and "string" in err.message
    err = bad(
        make_project,
        tmp_path,
        'score2: "coalesce(profile_score, 0) * 2"',
        'score2: "big2 + 1"\n    big2: "score2 * 2"',
    )
    assert "cycle" in err.message and err.details["feature"] in ("score2", "big2")
    err = bad(make_project, tmp_path, "features: [score]", "features: [scor]")
    assert err.details["feature"] == "profile_scor" and "no column 'scor'" in err.message


def test_window_over_an_undated_declared_source_fails_at_parse(
    make_project: Callable[..., Project],
) -> None:
    with pytest.raises(SpecError, match="has no timestamp") as info:
        make_project(
            SPEC.replace(
                "users: {format: csv, primary_key: [user]}", "users: {format: csv}"
            ).replace(
                "    user_trips:\n      source: trips", "    user_trips:\n      source: users"
            )
        )
    assert info.value.details["line"] is not None
