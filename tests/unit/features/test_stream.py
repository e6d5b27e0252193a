"""The stream consumer: events land in the lake through validation and quarantine, window tiles
and lookups follow, and redelivery after a crash at any step changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from loopml import Project
from loopml.features import StreamConsumer
from tests.unit.features.test_point_in_time import PROFILES, SPEC, TRIPS, USERS


@pytest.fixture
def project(make_project: Callable[..., Project], tmp_path: Path) -> Project:
    p = make_project(SPEC)
    for name, text in (("profiles", PROFILES), ("users", USERS)):
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        p.data.ingest(name, [path])
    trips = tmp_path / "trips.csv"
    trips.write_text(TRIPS)
    assert p.features.publish("trips", pacsv.read_csv(trips)) == 6
    # A producer bug: the amount written as a word.
    bad = {
        "id": 7,
        "user": "a",
        "t": "2024-05-01T11:40:00Z",
        "amount": "lots",
        "flag": False,
        "done_at": "2024-05-01T11:50:00Z",
    }
    assert p.features.publish("trips", [bad]) == 1
    return p


def lake_count(p: Project) -> int:
    return int(p.data.query("SELECT count(*) AS n FROM trips").to_pylist()[0]["n"])


def window_values(p: Project) -> dict[int, tuple[object, ...]]:
    fs = p.features.feature_set
    ts = p.features.build(labelled_only=False).table.to_pylist()
    return {
        r["id"]: tuple(
            p.features.vector({k: r[k] for k in fs.request})[a.feature]
            for a in fs.windows["user_trips"].aggs
        )
        for r in ts
    }


def test_events_land_with_quarantine_and_tiles(project: Project) -> None:
    results = project.features.consumer("trips", batch_size=4).run(max_idle_steps=1, block_ms=0)
    assert [r.events for r in results] == [4, 3]
    assert sum(r.landed.rows_accepted for r in results if r.landed) == 6
    assert sum(r.landed.rows_quarantined for r in results if r.landed) == 1
    (entry,) = project.data.quarantine.list(source="trips")
    row = project.data.quarantine.show(entry.id).rows.to_pylist()[0]  # type: ignore[union-attr]
    assert row["reasons"][0]["code"] == "unparseable" and '"lots"' in row["raw"]
    assert row["file"].startswith("stream:source.trips@")
    assert lake_count(project) == 6
    # Online windows, fed by the stream, equal the training set built from the lake.
    fs = project.features.feature_set
    for r in project.features.build(labelled_only=False).table.to_pylist():
        online = project.features.vector({k: r[k] for k in fs.request})
        for agg in fs.windows["user_trips"].aggs:
            assert online[agg.feature] == r[agg.feature], (r["id"], agg.feature)


def test_redelivery_after_a_crash_before_ack_changes_nothing(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = project.features.consumer("trips", consumer="c1", batch_size=6)
    monkeypatch.setattr(
        consumer.log, "ack", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed"))
    )
    with pytest.raises(RuntimeError):
        consumer.step()
    monkeypatch.undo()
    assert lake_count(project) == 6
    before = window_values(project)
    again = project.features.consumer("trips", consumer="c1", batch_size=6).step()
    assert again.events == 6 and again.skipped == 6 and again.landed is None and again.acked == 6
    assert lake_count(project) == 6
    assert window_values(project) == before
    assert project.events.pending("source.trips", "loopml-lake") == 0


def test_crash_between_landing_and_tiles_is_repaired(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = project.features.consumer("trips", consumer="c1", batch_size=6)
    monkeypatch.setattr(
        StreamConsumer, "_apply", lambda self, batch: (_ for _ in ()).throw(RuntimeError("killed"))
    )
    with pytest.raises(RuntimeError):
        consumer.step()
    monkeypatch.undo()
    assert lake_count(project) == 6
    fresh = project.features.consumer("trips", consumer="c1", batch_size=6)
    fresh.step()  # folds the landed batch in before reading
    values = window_values(project)
    assert values[3][:2] == (2, 250.0)  # trips 1 and 2, once each
    project.features.consumer("trips", consumer="c1", batch_size=6).step()
    assert window_values(project) == values


def test_materialize_does_not_fold_stream_batches_twice(project: Project) -> None:
    project.features.consumer("trips", batch_size=6).run(max_idle_steps=1, block_ms=0)
    before = window_values(project)
    counts = project.features.materialize()
    assert counts["tiles"]["user_trips"] == 0  # every batch was folded by the consumer
    assert window_values(project) == before


def trips_file(tmp_path: Path, name: str, rows: list[tuple[int, str, str, float]]) -> Path:
    """A trips CSV of (id, user, time, amount) rows."""
    path = tmp_path / name
    lines = ["id,user,t,amount,flag,done_at"]
    lines += [f"{i},{u},{t},{a},false,{t}" for i, u, t, a in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_micro_batches_of_one_or_two_events_land_and_update_the_online_store(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = make_project(SPEC)
    for name, text in (("profiles", PROFILES), ("users", USERS)):
        (tmp_path / f"{name}.csv").write_text(text)
        p.data.ingest(name, [tmp_path / f"{name}.csv"])
    for day in (1, 2, 3):  # three ordinary files of 60 trips: the batch checks have a history
        rows = [
            (day * 100 + i, "z", f"2024-04-0{day}T{i // 6:02d}:{i % 6 * 10:02d}:00Z", 5.0)
            for i in range(60)
        ]
        (r,) = p.data.ingest("trips", [trips_file(tmp_path, f"d{day}.csv", rows)])
        assert r.status == "landed"
    request = {"id": 1000, "user": "q", "t": "2024-05-02T10:30:00Z", "amount": 1}
    consumer = p.features.consumer("trips", batch_size=100)

    trip = {"id": 999, "user": "q", "t": "2024-05-02T10:00:00Z", "amount": 7, "flag": False}
    p.features.publish("trips", [trip | {"done_at": trip["t"]}])
    step = consumer.step()
    assert step.landed is not None and step.landed.status == "landed", step.landed
    assert step.tiles == 1
    assert (p.features.vector(request)["n_1h"], p.features.vector(request)["total_1h"]) == (1, 7)

    more = [
        {"id": 997 - k, "user": "q", "t": f"2024-05-02T10:0{k + 1}:00Z", "amount": 1, "flag": True}
        for k in range(2)
    ]
    p.features.publish("trips", [m | {"done_at": m["t"]} for m in more])
    step = consumer.step()
    assert step.landed is not None and step.landed.rows_accepted == 2
    assert p.features.vector(request)["n_1h"] == 3
    assert lake_count(p) == 180 + 3


def test_a_held_micro_batch_is_said_not_to_reach_the_online_store(project: Project) -> None:
    consumer = project.features.consumer("trips", batch_size=4)
    consumer.run(max_idle_steps=1, block_ms=0)
    odd = {"id": 50, "user": "a", "t": "2024-05-01T12:00:00Z", "amount": 1, "flag": False}
    project.features.publish("trips", [odd | {"done_at": odd["t"], "gate": "B7"}])
    step = consumer.step()
    assert step.landed is not None and step.landed.status == "held"
    assert step.landed.quarantine_id is not None
    (note,) = step.notes
    assert step.landed.quarantine_id in note and "schema_change" in note
    assert "1 event" in note and "online store" in note
