"""The HTTP app: ``/predict``, the Open Inference Protocol (``/v2``), ``/events``, health,
readiness, Prometheus ``/metrics`` and the OpenAPI docs, on FastAPI with orjson; ``POST
/predict`` itself is answered by a plain ASGI fast path in front of it.

Bad input gets a 4xx naming the field, ``{"error": {"code", "message", "details"}}`` (the
``/v2`` routes answer ``{"error": "..."}`` as the protocol says), every route through one table
(:mod:`loopml.serving._errors`), which the OpenAPI document lists; the server keeps serving.
Bodies are bounded while they are read (:mod:`loopml.serving._limits`). ``/docs`` loads Swagger
UI from this server, never from a CDN.
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
from fastapi.responses import PlainTextResponse, Response

from loopml.serving._docs import add_docs_routes
from loopml.serving._errors import BODY, HttpError, add_error_schemas, classify, responses
from loopml.serving._oip import add_oip_routes
from loopml.serving._predict import FastPath, PredictHandler, dumps, parse_json
from loopml.serving._runtime import Runtime

JSON = "application/json"
ROW = {"$ref": "#/components/schemas/PredictRow"}
PREDICT_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "anyOf": [
                    ROW,
                    {
                        "type": "object",
                        "properties": {"rows": {"type": "array", "items": ROW, "minItems": 1}},
                        "required": ["rows"],
                    },
                ]
            }
        }
    },
}
# The JSON types a request feature of each type is sent as (null: unknown, always allowed).
FEATURE_TYPES: dict[str, list[str]] = {
    "int": ["integer"],
    "float": ["number"],
    "bool": ["boolean"],
    "string": ["string"],
    "timestamp": ["string", "number"],
    "duration": ["string", "number"],
}


def row_schema(rt: Runtime | None) -> dict[str, Any]:
    """The JSON schema of one /predict row: the served feature set's request features (each
    required, null for unknown), ``_id`` and ``_at``; any object without a feature set."""
    fs = rt.engine.fs if rt is not None else None
    if fs is None:
        return {"type": "object", "description": "One row: the model's input features."}
    props: dict[str, Any] = {
        name: {"type": [*FEATURE_TYPES.get(fs.features[name].type, ["string"]), "null"]}
        for name in fs.request
    }
    props["_id"] = {"type": "string", "description": "Your id (kept as c_<id>), no ':'."}
    props["_at"] = {"type": ["string", "number", "null"], "description": "The event time."}
    return {
        "type": "object",
        "description": "One row: the request features (null for unknown), optionally _id, _at.",
        "properties": props,
        "required": list(fs.request),
        "additionalProperties": False,
    }


def _json(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type=JSON)


def json_body(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An operation's documented JSON request body (the routes read it themselves)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {JSON: {"schema": schema or {"type": "object"}}},
        }
    }


RANK_BODY = json_body(
    "The candidates to rank, an optional context merged into each, k, and an optional id.",
    {
        "type": "object",
        "required": ["candidates"],
        "properties": {
            "candidates": {"type": "array", "items": {"type": "object"}},
            "context": {"type": "object"},
            "k": {"type": "integer", "minimum": 1},
            "id": {"type": "string"},
        },
    },
)
EVENTS_BODY = json_body(
    'A JSON list of event objects, or {"rows": [...]}.',
    {
        "oneOf": [
            {"type": "array", "items": {"type": "object"}},
            {
                "type": "object",
                "required": ["rows"],
                "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
            },
        ]
    },
)
FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "description": "Labels: a JSON array, JSON Lines or CSV, one label a row.",
        "content": {
            JSON: {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


async def read_body(request: Request) -> bytes:
    """The body: bounded by the ASGI wrapper in front of the app, which raises 413 or 408 while
    it is read (:class:`loopml.serving._limits.LimitedReceive`)."""
    return b"".join([chunk async for chunk in request.stream()])


def open_runtime(root: str | Path) -> Runtime:
    """A worker's runtime over the project at ``root``, which it closes when it stops.

    The app factory is a composition root for the worker it starts from a path: this is the one
    place in serving that imports ``Project`` (allowed by the import contract's
    ``ignore_imports``), imported here so that nothing else in the module reaches the project."""
    from loopml._project import Project

    project = Project.open(root)
    try:
        return Runtime(project.serving.parts, on_stop=project.close)
    except BaseException:
        project.close()  # a runtime that failed to build leaves no store open behind it
        raise


def create_app(project: str | Path | None = None, *, runtime: Runtime | None = None) -> Any:
    """The serving app (an ASGI application) for the project at ``project`` (or
    ``$LOOPML_PROJECT``), or around a runtime built by the caller."""
    root = Path(project or os.environ.get("LOOPML_PROJECT", "."))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or open_runtime(root)
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
        docs_url=None,  # served from local assets below
        redoc_url=None,  # ReDoc would load its script from a CDN
        title="loopml serving",
        description="Predictions from the champion: dynamic, static or hybrid, with a fallback under a latency budget.",
        version="1",
        lifespan=lifespan,
        **options,
    )

    async def _answer(request: Request, exc: Exception) -> Response:
        # Every route's errors, and the framework's (no such route, wrong method), through one
        # table; the /v2 routes answer in the protocol's shape.
        if isinstance(exc, ClientDisconnect):  # the body never finished: nobody to answer
            exc = HttpError(400, "disconnected", "the client went away")
        if isinstance(exc, RequestValidationError):
            first = exc.errors()[0] if exc.errors() else {}
            field = ".".join(str(x) for x in first.get("loc", ()))
            exc = HttpError(422, "bad_request", f"{field}: {first.get('msg')}", {"field": field})
        answer = classify(exc)
        rt = getattr(request.app.state, "rt", None)
        if rt is not None:
            rt.metrics.errors.labels(str(answer.status), answer.code).inc()
        oip = request.url.path.startswith("/v2/")
        return Response(
            answer.oip_body() if oip else answer.body(),
            answer.status,
            headers={k.decode(): v.decode() for k, v in answer.headers()[1:]},
            media_type=JSON,
        )

    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    from loopml.errors import LoopmlError

    for kind in (
        HttpError,
        LoopmlError,
        HTTPException,
        RequestValidationError,
        ClientDisconnect,
        Exception,
    ):
        app.add_exception_handler(kind, _answer)

    @app.post(
        "/predict",
        summary="Predict one row or many",
        openapi_extra={"requestBody": PREDICT_BODY},
        responses=responses(*BODY, 422, 503),
    )
    async def predict(request: Request) -> Response:
        # Normally answered by the ASGI fast path; this route documents it (and serves when the
        # app is mounted without the fast path).
        handler: PredictHandler = request.app.state.predict
        body = await read_body(request)
        status, data = await handler.handle(body)
        return Response(data, status_code=status, media_type=JSON)

    @app.post(
        "/rank",
        summary="Rank candidates with the model; interleave two rankers during an experiment",
        openapi_extra=RANK_BODY,
        responses=responses(*BODY, 422, 503),
    )
    async def rank(request: Request) -> Response:
        rt: Runtime = request.app.state.rt
        payload = parse_json(await read_body(request))
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

    @app.get(
        "/readyz",
        summary="A model is loaded and answering",
        responses={
            503: {
                "description": "No model is loaded yet: the same status body.",
                "content": {JSON: {"schema": {"type": "object"}}},
            }
        },
    )
    async def readyz(request: Request) -> Response:
        status = request.app.state.rt.status()
        return _json(status, 200 if status["ready"] else 503)

    @app.get("/status", summary="What this worker serves: version, swaps, breaker, log")
    async def status(request: Request) -> Response:
        return _json(request.app.state.rt.status())

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
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
        openapi_extra=EVENTS_BODY,
        responses=responses(*BODY, 401, 403, 404, 422, 503),
    )
    async def events(source: str, request: Request) -> Response:
        _authorize(request)
        rt: Runtime = request.app.state.rt
        payload = parse_json(await read_body(request))
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
        openapi_extra=FEEDBACK_BODY,
        responses=responses(*BODY, 401, 403, 413, 422, 503),
    )
    async def feedback(request: Request) -> Response:
        _authorize(request)
        rt: Runtime = request.app.state.rt
        from loopml.errors import ReadError
        from loopml.monitoring import parse_feedback

        body = await read_body(request)
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
            lambda: rt.parts.monitoring.feedback(rows, source="http", where=parsed.where),
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

    @app.post(
        "/admin/reload",
        summary="Check the served alias now (needs the token)",
        responses=responses(*BODY, 401, 403),
    )
    async def reload(request: Request) -> Response:
        _authorize(request)
        rt: Runtime = request.app.state.rt
        loop = asyncio.get_running_loop()
        swapped = await loop.run_in_executor(request.app.state.pool, rt.holder.check)
        return _json({"swapped": swapped, **rt.holder.status()})

    add_oip_routes(app, HttpError, read_body)
    add_docs_routes(app)
    schema = app.openapi

    def openapi() -> dict[str, Any]:
        doc = add_error_schemas(schema())
        rt = getattr(app.state, "rt", None)  # the document is built after the runtime opened
        doc["components"]["schemas"]["PredictRow"] = row_schema(rt)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    return FastPath(app)


def app_from_env() -> Any:
    """The factory uvicorn workers call (``loopml serve`` sets ``LOOPML_PROJECT``)."""
    return create_app()


__all__ = ["HttpError", "app_from_env", "create_app"]
