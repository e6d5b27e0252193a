"""The HTTP app: ``/predict``, the Open Inference Protocol (``/v2``), ``/events``, health,
readiness, Prometheus ``/metrics`` and the OpenAPI docs, on FastAPI with orjson.

Bad input gets a 4xx naming the field, ``{"error": {"code", "message", "details"}}`` (the
``/v2`` routes answer ``{"error": "..."}`` as the protocol says); the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from loopml.errors import ConflictError, LoopmlError, NotFoundError, UsageError
from loopml.serving._engine import Engine, Prediction
from loopml.serving._runtime import Runtime

log = logging.getLogger("loopml.serving")
JSON = "application/json"


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type=JSON)


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    return _json({"error": {"code": code, "message": message, "details": details or {}}}, status)


def _status_of(exc: LoopmlError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, UsageError):
        return 422
    return 500


async def _read(request: Request, limit: int) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes before reading them."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpError(400, "bad_request", "Content-Length is not a number")
        if int(length) > limit:
            raise HttpError(413, "too_large", f"the body is {length} bytes; the limit is {limit}", {"limit": limit})
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "too_large", f"the body is over the limit of {limit} bytes", {"limit": limit})
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise HttpError(400, "bad_json", "the body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "bad_json", f"the body is not valid JSON: {exc}") from None


def create_app(project: str | Path | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The serving app for the project at ``project`` (or ``$LOOPML_PROJECT``), or around a
    runtime built by the caller (tests)."""
    root = Path(project or os.environ.get("LOOPML_PROJECT", "."))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or Runtime.open(root)
        app.state.rt = rt
        app.state.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="loopml-model")
        rt.start()
        try:
            yield
        finally:
            app.state.pool.shutdown(wait=False, cancel_futures=True)
            rt.stop()

    app = FastAPI(
        title="loopml serving",
        description="Predictions from the champion: dynamic, static or hybrid, with a fallback under a latency budget.",
        version="1",
        lifespan=lifespan,
    )

    @app.exception_handler(HttpError)
    async def _http_error(request: Request, exc: HttpError) -> Response:
        _count(request, exc.status, exc.code)
        if request.url.path.startswith("/v2/"):
            return _json({"error": exc.message}, exc.status)
        return _error(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(LoopmlError)
    async def _loopml_error(request: Request, exc: LoopmlError) -> Response:
        status = _status_of(exc)
        _count(request, status, exc.code)
        if request.url.path.startswith("/v2/"):
            return _json({"error": exc.message}, status)
        return _error(status, exc.code, exc.message, exc.details)

    def _count(request: Request, status: int, code: str) -> None:
        rt = getattr(request.app.state, "rt", None)
        if rt is not None:
            rt.metrics.errors.labels(str(status), code).inc()

    # ------------------------------------------------------------------------ predictions

    async def _answer(rt: Runtime, rows: list[Any]) -> tuple[list[Prediction], float]:
        started = time.perf_counter()
        if len(rows) > rt.spec.max_batch:
            raise HttpError(413, "too_many_rows", f"{len(rows)} rows; the limit is {rt.spec.max_batch} per request",
                            {"limit": rt.spec.max_batch})
        served = rt.holder.current
        if served is None:
            raise HttpError(503, "no_model", f"no version of {rt.name} holds the alias {rt.spec.alias!r} yet: promote one")
        engine: Engine = rt.engine
        parsed = engine.parse(rows)  # client errors: 422 naming the field, before any model work
        preds = await _model_or_fallback(rt, engine, parsed, served)
        elapsed = time.perf_counter() - started
        for p in preds:
            p.latency_us = elapsed * 1e6 / len(preds)
            rt.record(p, elapsed / len(preds))
        return preds, elapsed

    async def _model_or_fallback(rt: Runtime, engine: Engine, rows: list[dict[str, Any]], served: Any) -> list[Prediction]:
        if not engine.breaker.allow():
            return engine.fallback(rows, "breaker_open", served)
        budget = rt.spec.latency_budget.total_seconds() if rt.spec.latency_budget else None
        try:
            if rt.spec.isolated:
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(app.state.pool, engine.answer, rows, served)
                preds = await asyncio.wait_for(future, budget) if budget else await future
            else:
                preds = engine.answer(rows, served)
        except TimeoutError:
            engine.breaker.failure()
            rt.metrics.breaker_open.set(1 if engine.breaker.open else 0)
            return engine.fallback(rows, "latency_budget", served)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing model is answered by the fallback
            log.warning("the model failed: %r", exc)
            engine.breaker.failure()
            rt.metrics.breaker_open.set(1 if engine.breaker.open else 0)
            return engine.fallback(rows, "model_error", served)
        engine.breaker.success()
        rt.metrics.breaker_open.set(0)
        return preds

    @app.post(
        "/predict",
        summary="Predict one row or many",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"oneOf": [
                    {"type": "object", "description": "One row: the request features (and optionally _id, _at)."},
                    {"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "object"}}}, "required": ["rows"]},
                ]}}},
            }
        },
    )
    async def predict(request: Request) -> Response:
        rt: Runtime = request.app.state.rt
        payload = await _read(request, rt.spec.max_body_bytes)
        if isinstance(payload, dict) and "rows" in payload:
            rows = payload["rows"]
            if not isinstance(rows, list) or not rows:
                raise HttpError(422, "bad_rows", "'rows' must be a non-empty list of objects", {"field": "rows"})
            preds, elapsed = await _answer(rt, rows)
            return _json({
                "model": rt.name,
                "predictions": [p.body(rt.spec.top_k) for p in preds],
                "latency_ms": round(elapsed * 1000, 3),
            })
        if not isinstance(payload, dict):
            raise HttpError(422, "bad_body", "send one row as a JSON object, or {\"rows\": [...]}")
        (pred,), _ = await _answer(rt, [payload])
        return _json(pred.body(rt.spec.top_k))

    # ------------------------------------------------------------------------------ health

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", summary="A model is loaded and answering")
    async def readyz(request: Request) -> Response:
        rt: Runtime = request.app.state.rt
        status = rt.status()
        return _json(status, 200 if status["ready"] else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        rt: Runtime = request.app.state.rt
        rt.refresh_gauges()
        return Response(rt.metrics.exposition(), media_type="text/plain; version=0.0.4")

    # --------------------------------------------------------------------------- mutations

    def _authorize(request: Request) -> None:
        rt: Runtime = request.app.state.rt
        expected = os.environ.get(rt.spec.token_env)
        if not expected:
            raise HttpError(403, "no_token", f"this endpoint changes state and needs a token: set {rt.spec.token_env} on the server")
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
            raise HttpError(401, "unauthorized", "send Authorization: Bearer <token>")

    @app.post("/events/{source}", summary="Send events to a source's stream (needs the token)")
    async def events(source: str, request: Request) -> Response:
        _authorize(request)
        rt: Runtime = request.app.state.rt
        payload = await _read(request, rt.spec.max_body_bytes)
        rows = payload.get("rows") if isinstance(payload, dict) else payload
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise HttpError(422, "bad_rows", "send a JSON list of row objects, or {\"rows\": [...]}", {"field": "rows"})
        n = rt.publish(source, rows)
        return _json({"source": source, "events": n}, 202)

    @app.post("/admin/reload", summary="Check the served alias now (needs the token)")
    async def reload(request: Request) -> Response:
        _authorize(request)
        rt: Runtime = request.app.state.rt
        loop = asyncio.get_running_loop()
        swapped = await loop.run_in_executor(app.state.pool, rt.holder.check)
        return _json({"swapped": swapped, **rt.holder.status()})

    from loopml.serving._oip import add_oip_routes

    add_oip_routes(app, _answer, HttpError)
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn workers call (``loopml serve`` sets ``LOOPML_PROJECT``)."""
    return create_app()
