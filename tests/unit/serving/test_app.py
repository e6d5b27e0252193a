"""The HTTP app in process: /predict in every mode, bad input gets a 4xx naming the field (never
a 5xx), the Open Inference Protocol, tokens on mutating endpoints, metrics and readiness, the
fallback under a latency budget and the circuit breaker."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopml import Project
from loopml.serving import Runtime, create_app
from loopml.spec import ServingSpec
from tests.unit.serving.conftest import requests_of


def client_for(project: Project, **serving: Any) -> TestClient:
    spec = ServingSpec.model_validate({**project.spec.serving.model_dump(mode="json"), **serving})
    return TestClient(create_app(runtime=Runtime(project, spec=spec)))


@pytest.fixture(scope="module")
def client(served: Project) -> Iterator[TestClient]:
    with client_for(served) as c:
        yield c


@pytest.fixture(scope="module")
def reqs(served: Project) -> list[dict[str, Any]]:
    return requests_of(served, 50, start=20_000)


def test_predict_one_and_many(
    client: TestClient, reqs: list[dict[str, Any]], served: Project
) -> None:
    r = client.post("/predict", json=reqs[0])
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "flights_delay" and body["version"] == 1 and body["mode"] == "dynamic"
    assert 0 <= body["prediction"]["probability"] <= 1 and body["latency_ms"] > 0
    many = client.post("/predict", json={"rows": reqs[:10]}).json()
    assert len(many["predictions"]) == 10
    # The same answer as the model's batch path on the same features.
    fs = served.features.feature_set
    vector = served.features.online.vector(reqs[0])
    model = served.models.load("champion")
    import pyarrow as pa

    expected = model.predict(pa.table({f: [vector[f]] for f in fs.vector}))[0]
    assert body["prediction"]["probability"] == expected


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda r: {**r, "carrier": 5}, 422, "carrier"),
        (lambda r: {**r, "distance": "far"}, 422, "distance"),
        (lambda r: {**r, "time_hour": "yesterday"}, 422, "time_hour"),
        (lambda r: {k: v for k, v in r.items() if k != "origin"}, 422, "origin"),
        (lambda r: {**r, "carier": "UA"}, 422, "carier"),
        (lambda r: [r], 422, None),
        (lambda r: {"rows": []}, 422, "rows"),
        (lambda r: {"rows": [r, {**r, "flight": 1.5}]}, 422, "flight"),
    ],
)
def test_bad_input_names_the_field(
    client: TestClient, reqs: list[dict[str, Any]], mutate: Any, status: int, field: str | None
) -> None:
    r = client.post("/predict", json=mutate(reqs[0]))
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"]
    if field is not None:
        assert error["details"].get("field") == field or field in error["message"]


def test_malformed_and_huge_bodies(client: TestClient, reqs: list[dict[str, Any]]) -> None:
    assert client.post("/predict", content=b"{not json").status_code == 400
    assert client.post("/predict", content=b"").status_code == 400
    huge = json.dumps({**reqs[0], "_pad": "x" * 2_000_000})
    r = client.post("/predict", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = client.post("/predict", json={"rows": [reqs[0]] * 1001})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_rows"
    assert client.get("/healthz").status_code == 200  # still serving


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=6)
        ),
        max_leaves=20,
    )
)
def test_fuzzed_bodies_never_get_a_5xx(client: TestClient, body: Any) -> None:
    r = client.post(
        "/predict", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500 or r.status_code == 200, (r.status_code, r.text)
    r = client.post("/v2/models/flights_delay/infer", content=json.dumps(body))
    assert 400 <= r.status_code < 500 or r.status_code == 200, (r.status_code, r.text)


def test_fuzzed_field_values_never_get_a_5xx(
    client: TestClient, reqs: list[dict[str, Any]]
) -> None:
    rng = np.random.default_rng(0)
    weird: list[Any] = [
        None,
        True,
        -1,
        0,
        2**70,
        1e308,
        -0.0,
        "",
        "x" * 1000,
        [],
        {},
        "2013-13-45T99:99:99Z",
        "NaN",
    ]
    for _ in range(200):
        field = list(reqs[0])[rng.integers(len(reqs[0]))]
        value = weird[rng.integers(len(weird))]
        r = client.post("/predict", json={**reqs[0], field: value})
        assert r.status_code in (200, 422), (field, value, r.text)


def test_open_inference_protocol(client: TestClient, reqs: list[dict[str, Any]]) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/flights_delay").json()
    assert meta["versions"] == ["1"] and {i["name"] for i in meta["inputs"]} == set(reqs[0])
    inputs = [
        {"name": k, "shape": [2], "datatype": "BYTES", "data": [reqs[0][k], reqs[1][k]]}
        for k in reqs[0]
    ]
    out = client.post("/v2/models/flights_delay/infer", json={"id": "q1", "inputs": inputs}).json()
    assert out["model_name"] == "flights_delay" and out["id"] == "q1"
    assert out["outputs"][0]["shape"] == [2] and len(out["outputs"][0]["data"]) == 2
    single = client.post("/predict", json=reqs[0]).json()["prediction"]["probability"]
    assert out["outputs"][0]["data"][0] == single
    r = client.post("/v2/models/other/infer", json={"inputs": inputs})
    assert r.status_code == 404 and isinstance(r.json()["error"], str)
    r = client.post("/v2/models/flights_delay/versions/9/infer", json={"inputs": inputs})
    assert r.status_code == 404
    r = client.post(
        "/v2/models/flights_delay/infer",
        json={"inputs": [{"name": "carrier", "shape": [3], "data": ["UA"]}]},
    )
    assert r.status_code == 400


def test_mutating_endpoints_need_the_token(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOPML_TOKEN", raising=False)
    assert client.post("/admin/reload").status_code == 403
    monkeypatch.setenv("LOOPML_TOKEN", "s3cret")
    assert client.post("/admin/reload").status_code == 401
    assert (
        client.post("/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
    )
    r = client.post("/admin/reload", headers={"authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["version"] == 1
    r = client.post(
        "/events/flights", json={"rows": "no"}, headers={"authorization": "Bearer s3cret"}
    )
    assert r.status_code == 422


def test_metrics_and_readiness(client: TestClient, reqs: list[dict[str, Any]]) -> None:
    client.post("/predict", json=reqs[1])
    text = client.get("/metrics").text
    assert 'loopml_requests_total{endpoint="predict",mode="dynamic",version="1"}' in text
    assert "loopml_request_latency_seconds_bucket" in text and "loopml_errors_total" in text
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["serving"]["version"] == 1
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_static_and_hybrid_modes(served: Project, reqs: list[dict[str, Any]]) -> None:
    summary = served.serving.precompute(window=None)
    assert summary["keys"] > 1000 and summary["bytes"] > 0
    with client_for(served, mode="static") as c:
        body = c.post("/predict", json=reqs[2]).json()
        assert body["mode"] == "static" and body["version"] == 1
    with client_for(served, mode="hybrid") as c:
        modes = {c.post("/predict", json=r).json()["mode"] for r in reqs[:20]}
        assert modes <= {"static", "dynamic"} and "static" in modes
    unknown = {**reqs[2], "dest": "XYZ"}
    with client_for(served, mode="static") as c:
        body = c.post("/predict", json=unknown).json()
        assert body["mode"] == "fallback" and body["fallback"] == "not_precomputed"


def test_consistency_repeats_the_answer(served: Project, reqs: list[dict[str, Any]]) -> None:
    spec = {"consistency": {"key": ["tailnum"], "ttl": "1h"}}
    with client_for(served, **spec) as c:
        first = c.post("/predict", json=reqs[3]).json()
        again = c.post("/predict", json={**reqs[3], "distance": reqs[3]["distance"] + 500}).json()
    assert first["mode"] == "dynamic" and again["mode"] == "consistent"
    assert again["prediction"]["probability"] == first["prediction"]["probability"]


class Slow:
    """A model wrapper that sleeps, or fails, before answering."""

    def __init__(self, inner: Any, *, sleep: float = 0.0, fail: bool = False) -> None:
        self.inner, self.sleep, self.fail = inner, sleep, fail

    def score(self, values: Any) -> Any:
        if self.fail:
            raise RuntimeError("the model broke")
        time.sleep(self.sleep)
        return self.inner.score(values)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_fallback_answers_within_the_budget(served: Project, reqs: list[dict[str, Any]]) -> None:
    served.serving.precompute(window=None)
    with client_for(
        served,
        latency_budget="50ms",
        fallback={"kind": "precomputed"},
        breaker={"failures": 3, "cooldown": "60s"},
    ) as c:
        holder = c.app.state.rt.holder
        holder.current.predictor = Slow(holder.current.predictor, sleep=0.5)
        started = time.perf_counter()
        answers = [c.post("/predict", json=r) for r in reqs[:5]]
        elapsed = time.perf_counter() - started
        bodies = [a.json() for a in answers]
        assert all(a.status_code == 200 for a in answers)
        assert all(b["mode"] == "fallback" for b in bodies)
        assert [b["fallback"] for b in bodies[:3]] == ["latency_budget"] * 3
        assert {b["fallback"] for b in bodies[3:]} == {"breaker_open"}  # stopped calling it
        assert elapsed < 5 * 0.5  # never waited for the slow model
        assert all(b["latency_ms"] < 200 for b in bodies)
        metrics = c.get("/metrics").text
        assert 'loopml_fallbacks_total{reason="latency_budget"} 3.0' in metrics


def test_fallback_when_the_model_fails(served: Project, reqs: list[dict[str, Any]]) -> None:
    with client_for(
        served,
        fallback={"kind": "default", "value": 0.2},
        breaker={"failures": 2, "cooldown": "0.2s"},
    ) as c:
        holder = c.app.state.rt.holder
        real = holder.current.predictor
        holder.current.predictor = Slow(real, fail=True)
        bodies = [c.post("/predict", json=r).json() for r in reqs[:4]]
        assert [b["fallback"] for b in bodies] == [
            "model_error",
            "model_error",
            "breaker_open",
            "breaker_open",
        ]
        assert all(b["prediction"]["probability"] == 0.2 for b in bodies)
        holder.current.predictor = real  # the model recovers
        time.sleep(0.25)
        assert (
            c.post("/predict", json=reqs[0]).json()["mode"] == "dynamic"
        )  # half-open trial closed it


def test_a_client_cannot_claim_the_ids_ordinary_callers_get(
    client: TestClient, reqs: list[dict[str, Any]]
) -> None:
    first = client.post("/predict", json=reqs[0]).json()["id"]
    # What a client would guess next if ids counted: the same prefix, the counter plus k.
    head, tail = first[:-12], first[-12:]
    n = int(tail, 16) if _hex(tail) else 0
    guesses = [f"{head}{n + k:012x}" for k in range(1, 21)]
    claimed = [client.post("/predict", json={**reqs[1], "_id": g}).json()["id"] for g in guesses]
    ordinary = [client.post("/predict", json=reqs[2]).json()["id"] for _ in range(40)]
    assert not set(claimed) & set(ordinary)
    assert len(set(ordinary)) == len(ordinary)
    # A client's id is kept (idempotent retries answer under it) in its own namespace.
    assert all(c == f"c_{g}" for c, g in zip(claimed, guesses, strict=True))
    assert not any(o.startswith("c_") for o in ordinary)
    # Server ids are unguessable: consecutive ones share no counter.
    for a, b in itertools.pairwise(ordinary):
        assert sum(x != y for x, y in zip(a[-16:], b[-16:], strict=True)) >= 8, (a, b)
    ranked = client.post("/rank", json={"candidates": reqs[:2], "id": "mine"}).json()
    assert ranked["id"] == "c_mine" and ranked["items"][0]["id"] == "c_mine:0"


def _hex(text: str) -> bool:
    return all(ch in "0123456789abcdef" for ch in text)


@pytest.mark.parametrize("bad", [5, "", "a:b", "x" * 200, ["a"]])
def test_a_client_id_must_be_a_short_plain_string(
    client: TestClient, reqs: list[dict[str, Any]], bad: Any
) -> None:
    r = client.post("/predict", json={**reqs[0], "_id": bad})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "_id", r.text
