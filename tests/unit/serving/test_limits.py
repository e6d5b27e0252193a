"""Bodies are bounded while they are read, on every route: a body over the limit is refused
after reading at most the limit (never buffered whole), with the connection closed; a body that
stops arriving gets 408 after ``serving.body_timeout``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopml import Project
from loopml.serving import Runtime, create_app
from loopml.spec import ServingSpec

LIMIT = 100_000
CHUNK = 16_384

ROUTES = [
    "/predict",
    "/rank",
    "/feedback",
    "/events/flights",
    "/admin/reload",
    "/v2/models/flights_delay/infer",
    "/v2/models/flights_delay/versions/1/infer",
    "/healthz",
]
# Routes that read no body answer without reading one (uvicorn drops what still arrives).
NO_BODY = {"/admin/reload", "/healthz"}


@pytest.fixture(scope="module")
def client(served: Project) -> Iterator[TestClient]:
    base = served.spec.serving.model_dump(mode="json")
    spec = ServingSpec.model_validate({**base, "max_body_bytes": LIMIT, "body_timeout": "300ms"})
    with TestClient(create_app(runtime=Runtime(served, spec=spec))) as c:
        yield c


def _call(
    client: TestClient, path: str, receive: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send one request straight to the ASGI app with a given ``receive``."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"authorization", b"Bearer t"), *(headers or [])],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


@pytest.mark.parametrize("path", ROUTES)
def test_a_chunked_body_over_the_limit_is_refused_while_read(
    client: TestClient, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_TOKEN", "t")
    pulled = 0

    async def endless() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"[" * CHUNK, "more_body": True}

    status, headers, body = _call(client, path, endless)
    if path in NO_BODY:
        assert status in (200, 405) and pulled == 0  # POST /healthz: 405
        return
    assert status == 413, body
    assert b"too_large" in body or b"limit" in body
    assert pulled <= LIMIT // CHUNK + 1  # stopped at the limit, never read on
    assert headers.get(b"connection") == b"close"


@pytest.mark.parametrize("path", ROUTES)
def test_a_declared_length_over_the_limit_is_refused_before_reading(
    client: TestClient, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_TOKEN", "t")
    pulled = 0

    async def never() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        raise AssertionError("read a body declared too large")

    status, headers, _ = _call(client, path, never, [(b"content-length", b"300000000")])
    assert status == 413 and pulled == 0 and headers.get(b"connection") == b"close"


@pytest.mark.parametrize("path", [p for p in ROUTES if p not in NO_BODY])
def test_a_body_that_stops_arriving_times_out(
    client: TestClient, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_TOKEN", "t")
    calls = 0

    async def stalls() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b'{"rows": [', "more_body": True}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    started = time.monotonic()
    status, headers, body = _call(client, path, stalls)
    assert status == 408, body
    assert time.monotonic() - started < 3
    assert headers.get(b"connection") == b"close"


def test_small_bodies_still_answer(client: TestClient) -> None:
    assert client.post("/v2/models/flights_delay/infer", json={"inputs": []}).status_code == 400
    assert client.post("/predict", content=b"{not json").status_code == 400


@pytest.mark.parametrize("path", ["/predict", "/rank", "/v2/models/flights_delay/infer"])
def test_a_client_gone_mid_body_is_not_a_server_error(
    client: TestClient, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def leaves() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b'{"rows": [', "more_body": True}
        return {"type": "http.disconnect"}

    status, _, body = _call(client, path, leaves)
    assert status == 400 and b"went away" in body, body
