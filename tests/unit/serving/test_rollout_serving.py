"""Rollouts in the serving app: a canary's share of requests answered by the challenger, the
shared counters every worker adds to, and shadow predictions scored in the background and logged
beside the champion's, never returned."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient

from loopml import Project
from loopml.rollout import Rollouts
from loopml.serving import Runtime, create_app
from tests.unit.serving.conftest import champion_project, requests_of

pytestmark = pytest.mark.xdist_group("rollout_serving")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    p = champion_project(Path(tmp_path_factory.mktemp("rollout")))
    # A second version: the challenger (trained on a little more of January).
    v = p.models.train(as_of=datetime(2013, 1, 29, tzinfo=UTC), note="challenger").version
    assert v is not None and v.version == 2
    p.registry.set_alias(p.models.name, "challenger", 2, by="tests", reason="rollout tests")
    return p


def _client(project: Project) -> tuple[TestClient, Runtime]:
    rt = Runtime(project)
    return TestClient(create_app(runtime=rt)), rt


def test_canary_splits_requests_and_counts_them(project: Project) -> None:
    rollouts = Rollouts(project.store)
    r = rollouts.start(
        project.models.name, strategy="canary", champion=1, challenger=2, steps=[0.3, 0.6]
    )
    reqs = requests_of(project, 300, start=1_000)
    client, _ = _client(project)
    try:
        with client:
            versions: list[int] = []
            for req in reqs[:200]:
                body = client.post("/predict", json=req).json()
                versions.append(body["version"])
            many = client.post("/predict", json={"rows": reqs[200:]}).json()["predictions"]
            versions += [p["version"] for p in many]
            status = client.get("/status").json()
            assert status["rollout"]["challenger_loaded"] == 2
    finally:
        rollouts.end(rollouts.get(r.id), "stopped", at=datetime.now(UTC), reason="test over")
    share = versions.count(2) / len(versions)
    assert set(versions) == {1, 2}
    assert 0.2 < share < 0.4  # the declared 30 %, by a stable hash of each prediction id
    counts = rollouts.counts(r.id)  # flushed on stop: shared with every other worker
    assert counts[1]["requests"].n + counts[2]["requests"].n == len(versions)
    assert counts[2]["requests"].n == versions.count(2)
    assert counts[2]["latency_us"].n == versions.count(2)
    assert "errors" not in counts.get(2, {})
    # The champion scored the challenger's answers in the background (a paired comparison).
    assert counts[1]["shadowed"].n == versions.count(2)


def test_the_same_unit_stays_on_its_arm(project: Project) -> None:
    rollouts = Rollouts(project.store)
    r = rollouts.start(
        project.models.name,
        strategy="canary",
        champion=1,
        challenger=2,
        steps=[0.5],
        unit="tailnum",
    )
    reqs = requests_of(project, 60, start=3_000)
    client, _ = _client(project)
    try:
        with client:
            seen: dict[Any, set[int]] = {}
            for _ in range(2):
                for req in reqs:
                    v = client.post("/predict", json=req).json()["version"]
                    seen.setdefault(req["tailnum"], set()).add(v)
    finally:
        rollouts.end(rollouts.get(r.id), "stopped", at=datetime.now(UTC), reason="test over")
    assert all(len(v) == 1 for v in seen.values())
    assert {next(iter(v)) for v in seen.values()} == {1, 2}


def test_shadow_is_logged_not_answered(project: Project) -> None:
    rollouts = Rollouts(project.store)
    r = rollouts.start(project.models.name, strategy="shadow", champion=1, challenger=2, shadow=1.0)
    reqs = requests_of(project, 40, start=5_000)
    client, rt = _client(project)
    try:
        with client:
            ids = []
            for req in reqs:
                body = client.post("/predict", json=req).json()
                assert body["version"] == 1  # the champion always answers
                ids.append(body["id"])
    finally:
        rollouts.end(rollouts.get(r.id), "stopped", at=datetime.now(UTC), reason="test over")
    assert rt.shadowed == len(reqs) and rt.shadow_errors == 0
    project.monitoring.land()
    preds = project.monitoring.log.predictions()
    assert preds is not None
    shadow = preds.filter(pc.equal(preds["mode"], "shadow"))
    assert set(shadow["of"].to_pylist()) >= set(ids)
    shadow = shadow.filter(pc.is_in(shadow["of"], value_set=pa.array(ids)))
    assert set(shadow["version"].to_pylist()) == {2}
    # The challenger's own score of the same features, not a copy of the champion's.
    served = preds.filter(pc.is_in(preds["id"], value_set=shadow["of"]))
    assert shadow.num_rows >= len(ids)
    assert sorted(served["score"].to_pylist()) != sorted(shadow["score"].to_pylist())
    counts = rollouts.counts(r.id)
    assert counts[2]["shadowed"].n == len(reqs)
    assert counts[1]["requests"].n == len(reqs)
