"""Caller errors are 4xx on every route, through one table, and never count against the model:
a hostile client cannot open the circuit breaker for everyone. The breaker says why it opened
in /status and /metrics; the OpenAPI document lists every status a route answers with the
error body's schema; /docs runs offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopml import Project
from loopml.errors import (
    BackendUnavailable,
    ConflictError,
    IntegrityError,
    LoopmlError,
    NotFoundError,
    ReadError,
    UsageError,
)
from loopml.serving._errors import HttpError, classify
from tests.unit.serving.conftest import requests_of
from tests.unit.serving.test_app import Slow, client_for


@pytest.fixture(scope="module")
def client(served: Project) -> Iterator[TestClient]:
    with client_for(served) as c:
        yield c


@pytest.fixture(scope="module")
def reqs(served: Project) -> list[dict[str, Any]]:
    return requests_of(served, 20, start=20_000)


# ------------------------------------------------------------------------------ item 2: breaker


@pytest.mark.parametrize("at", ["x", "", True, [1], {"a": 1}, 1e300, "2013-13-45"])
def test_a_bad_event_time_is_the_callers_error_not_the_models(
    served: Project, reqs: list[dict[str, Any]], at: Any
) -> None:
    with client_for(served, breaker={"failures": 2, "cooldown": "60s"}) as c:
        for _ in range(5):
            r = c.post("/predict", json={**reqs[0], "time_hour": None, "_at": at})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["details"]["field"] == "_at"
            r = c.post("/predict", json={"rows": [reqs[1], {**reqs[0], "_at": at}]})
            assert r.status_code == 422 and r.json()["error"]["details"]["row"] == 1
        status = c.get("/status").json()
        assert status["breaker"]["state"] == "closed" and status["breaker"]["failures"] == 0
        ok = c.post("/predict", json=reqs[2]).json()
        assert ok["mode"] == "dynamic" and ok["fallback"] is None  # the model, not the prior


def test_the_breaker_says_why_it_opened(served: Project, reqs: list[dict[str, Any]]) -> None:
    with client_for(
        served,
        fallback={"kind": "default", "value": 0.2},
        breaker={"failures": 2, "cooldown": "60s"},
    ) as c:
        holder = c.app.state.rt.holder
        holder.current.predictor = Slow(holder.current.predictor, fail=True)
        for r in reqs[:3]:
            c.post("/predict", json=r)
        breaker = c.get("/status").json()["breaker"]
        assert breaker["state"] == "open" and breaker["failures"] == 2
        assert (
            breaker["reason"].startswith("model_error") and "the model broke" in breaker["reason"]
        )
        assert breaker["cooldown_s"] == 60 and 0 <= breaker["opened_s_ago"] < 60
        metrics = c.get("/metrics").text
        assert "loopml_breaker_open 1.0" in metrics
        assert 'loopml_breaker_opened_total{reason="model_error"} 1.0' in metrics


# ---------------------------------------------------------------------- item 9: one error table


def test_rank_with_a_garbage_time_is_a_4xx(client: TestClient, reqs: list[dict[str, Any]]) -> None:
    r = client.post(
        "/rank",
        json={
            "context": {"_at": "garbage"},
            "candidates": [reqs[0], {**reqs[1], "time_hour": None}],
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"]["field"] == "_at"
    r = client.post("/rank", json={"candidates": [reqs[0], {**reqs[1], "time_hour": None}]})
    assert r.status_code == 200, r.text
    r = client.post("/rank", json={"candidates": [reqs[0], {**reqs[1], "time_hour": "x"}]})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "time_hour"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (HttpError(413, "too_large", "big"), 413, "too_large"),
        (UsageError("bad"), 422, "usage_error"),
        (NotFoundError("none"), 404, "not_found"),
        (ConflictError("held"), 409, "conflict"),
        (ReadError("unreadable"), 400, "read_error"),
        (BackendUnavailable("down"), 503, "backend_unavailable"),
        (IntegrityError("tampered"), 500, "integrity_error"),
        (LoopmlError("what"), 500, "loopml_error"),
        (ValueError("a bug"), 500, "internal"),
    ],
)
def test_one_table_maps_errors_to_statuses(exc: Exception, status: int, code: str) -> None:
    got = classify(exc)
    assert (got.status, got.code) == (status, code)
    if status == 500 and not isinstance(exc, LoopmlError):
        assert "a bug" not in got.message  # never the internals


def test_framework_errors_get_the_same_body(client: TestClient) -> None:
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/predict")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


# ------------------------------------------------------------------ item 11: OpenAPI and /docs


def test_openapi_documents_every_status_with_the_error_schema(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert "ErrorBody" in doc["components"]["schemas"]
    for path, methods in paths.items():
        for method, op in methods.items():
            codes = set(op["responses"])
            assert "200" in codes or "202" in codes, (method, path)
            assert "500" in codes, (method, path)
            for code in codes - {"200", "202"}:
                if code == "503" and path in ("/readyz", "/v2/health/ready"):
                    continue  # the readiness body itself, with its status
                content = op["responses"][code]["content"]
                schema = content["application/json"]["schema"]
                expected = "OipError" if path.startswith("/v2") else "ErrorBody"
                assert schema["$ref"].endswith(expected), (method, path, code)
            if op.get("requestBody"):
                assert {"400", "408", "413"} <= codes, (method, path)
    assert {"401", "403"} <= set(paths["/admin/reload"]["post"]["responses"])
    assert {"422", "503"} <= set(paths["/predict"]["post"]["responses"])
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in paths["/feedback"]["post"]["requestBody"]["content"]
    assert "404" in paths["/v2/models/{name}/infer"]["post"]["responses"]


def test_docs_load_no_asset_from_another_host(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url:\s*["']([^"']+)["']""", page.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    assert "cdn" not in page.text.lower()
    for u in urls:
        got = client.get(u)
        assert got.status_code == 200 and got.content, u
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN
