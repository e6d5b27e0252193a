"""The HTTP app: ``/predict``, the Open Inference Protocol (``/v2``), ``/events``, health,
readiness, Prometheus ``/metrics`` and the OpenAPI docs, on FastAPI with orjson; ``POST
/predict`` itself is answered by a plain ASGI fast path in front of it.

Bad input gets a 4xx naming the field, ``{"error": {"code", "message", "details"}}`` (the
``/v2`` routes answer ``{"error": "..."}`` as the protocol says); the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from loopml.errors import LoopmlError
from loopml.serving._oip import add_oip_routes
from loopml.serving._predict import (
    FastPath,
    HttpError,
    PredictHandler,
    dumps,
    error_body,
    parse_json,
    status_of,
)
from loopml.serving._runtime import Runtime

JSON = "application/json"
PREDICT_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "description": "One row: the request features (and optionally _id, _at).",
                    },
                    {
                        "type": "object",
                        "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
                        "required": ["rows"],
                    },
                ]
            }
        }
    },
}


def _json(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type=JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes before reading them."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpError(400, "bad_request", "Content-Length is not a number")
        if int(length) > limit:
            raise HttpError(
                413,
                "too_large",
                f"the body is {length} bytes; the limit is {limit}",
                {"limit": limit},
            )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(
                413, "too_large", f"the body is over the limit of {limit} bytes", {"limit": limit}
            )
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(project: str | Path | None = None, *, runtime: Runtime | None = None) -> Any:
    """The serving app (an ASGI application) for the project at ``project`` (or
    ``$LOOPML_PROJECT``), or around a runtime built by the caller."""
    root = Path(project or os.environ.get("LOOPML_PROJECT", "."))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.open(root)
        pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="loopml-model")
        app.state.rt = rt
        app.state.pool = pool
        app.state.predict = PredictHandler(rt, pool)
        rt.start()
        try:
            yield
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            rt.stop()

    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # FastAPI's built-in OpenTelemetry looks up providers on every request; we count with
        # Prometheus instead.
        options["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        title="loopml serving",
        description="Predictions from the champion: dynamic, static or hybrid, with a fallback under a latency budget.",
        version="1",
        lifespan=lifespan,
        **options,
    )

    def _count(request: Request, status: int, code: str) -> None:
        rt = getattr(request.app.state, "rt", None)
        if rt is not None:
            rt.metrics.errors.labels(str(status), code).inc()

    @app.exception_handler(HttpError)
    async def _http_error(request: Request, exc: HttpError) -> Response:
        _count(request, exc.status, exc.code)
        if request.url.path.startswith("/v2/"):
            return _json({"error": exc.message}, exc.status)
        return Response(error_body(exc.code, exc.message, exc.details), exc.status, media_type=JSON)

    @app.exception_handler(LoopmlError)
    async def _loopml_error(request: Request, exc: LoopmlError) -> Response:
        status = status_of(exc)
        _count(request, status, exc.code)
        if request.url.path.startswith("/v2/"):
            return _json({"error": exc.message}, status)
        return Response(error_body(exc.code, exc.message, exc.details), status, media_type=JSON)

    @app.post(
        "/predict", summary="Predict one row or many", openapi_extra={"requestBody": PREDICT_BODY}
    )
    async def predict(request: Request) -> Response:
        # Normally answered by the ASGI fast path; this route documents it (and serves when the
        # app is mounted without the fast path).
        handler: PredictHandler = request.app.state.predict
        body = await read_body(request, handler.rt.spec.max_body_bytes)
        status, data = await handler.handle(body)
        return Response(data, status_code=status, media_type=JSON)

    @app.post(
        "/rank",
        summary="Rank candidates with the model; interleave two rankers during an experiment",
    )
    async def rank(request: Request) -> Response:
        rt: Runtime = request.app.state.rt
        payload = parse_json(await read_body(request, rt.spec.max_body_bytes))
        handler = getattr(request.app.state, "rank", None)
        if handler is None:
            from loopml.serving._rank import RankHandler

            handler = request.app.state.rank = RankHandler(rt)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(request.app.state.pool, handler.rank, payload)
        return _json(result)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", summary="A model is loaded and answering")
    async def readyz(request: Request) -> Response:
        status = request.app.state.rt.status()
        return _json(status, 200 if status["ready"] else 503)

    @app.get("/status", summary="What this worker serves: version, swaps, breaker, log")
    async def status(request: Request) -> Response:
        return _json(request.app.state.rt.status())

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        rt: Runtime = request.app.state.rt
        rt.refresh_gauges()
        return Response(rt.metrics.exposition(), media_type="text/plain; version=0.0.4")

    def _authorize(request: Request) -> None:
        rt: Runtime = request.app.state.rt
        expected = os.environ.get(rt.spec.token_env)
        if not expected:
            raise HttpError(
                403,
                "no_token",
                f"this endpoint changes state and needs a token: set {rt.spec.token_env} on the server",
            )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
            raise HttpError(401, "unauthorized", "send Authorization: Bearer <token>")

    @app.post(
        "/events/{source}",
        summary="Send events to a source's stream (needs the token)",
        status_code=202,
    )
    async def events(source: str, request: Request) -> Response:
        _authorize(request)
        rt: Runtime = request.app.state.rt
        payload = parse_json(await read_body(request, rt.spec.max_body_bytes))
        rows = payload.get("rows") if isinstance(payload, dict) else payload
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise HttpError(
                422,
                "bad_rows",
                'send a JSON list of row objects, or {"rows": [...]}',
                {"field": "rows"},
            )
        n = rt.publish(source, rows)
        return _json({"source": source, "events": n}, 202)

    @app.post(
        "/feedback",
        summary="Send labels for predictions, by prediction id or by the event's keys and "
        "event_time (needs the token): a JSON array, JSON Lines or CSV (Content-Type: text/csv)",
        status_code=202,
    )
    async def feedback(request: Request) -> Response:
        _authorize(request)
        rt: Runtime = request.app.state.rt
        from loopml.errors import ReadError
        from loopml.monitoring._feedback import parse_feedback

        body = await read_body(request, rt.spec.max_body_bytes)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        format = {"text/csv": "csv", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl"}
        try:
            parsed = parse_feedback(body, format=format.get(kind))
        except ReadError as exc:
            bad = "bad_json" if exc.details.get("format") == "json" else "bad_body"
            raise HttpError(400, bad, exc.message, exc.details) from None
        rows = parsed.rows
        if len(rows) > rt.spec.max_batch:
            raise HttpError(
                413,
                "too_many_rows",
                f"{len(rows)} feedback rows; the limit is {rt.spec.max_batch}",
                {"limit": rt.spec.max_batch},
            )
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            request.app.state.pool,
            lambda: rt.project.monitoring.feedback(rows, source="http", where=parsed.where),
        )
        if not result["accepted"]:
            first = result["rejected"][0]
            where = f"line {first['line']}" if "line" in first else f"row {first['row']}"
            raise HttpError(
                422,
                "bad_feedback",
                f"{where}: {first['error']}",
                {"rejected": result["rejected"][:100]},
            )
        return _json({"accepted": result["accepted"], "rejected": result["rejected"][:100]}, 202)

    @app.post("/admin/reload", summary="Check the served alias now (needs the token)")
    async def reload(request: Request) -> Response:
        _authorize(request)
        rt: Runtime = request.app.state.rt
        loop = asyncio.get_running_loop()
        swapped = await loop.run_in_executor(request.app.state.pool, rt.holder.check)
        return _json({"swapped": swapped, **rt.holder.status()})

    add_oip_routes(app, HttpError)
    return FastPath(app)


def app_from_env() -> Any:
    """The factory uvicorn workers call (``loopml serve`` sets ``LOOPML_PROJECT``)."""
    return create_app()


__all__ = ["HttpError", "app_from_env", "create_app"]
