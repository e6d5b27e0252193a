"""``/predict``: from a request body to a response body, without raising.

The handler sits under both the FastAPI route (for the docs) and a plain ASGI fast path that
answers ``POST /predict`` before any framework code runs (the framework would cost more than the
model). Bad input gets a 4xx naming the field; a failing or slow model gets the fallback.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from loopml.serving._engine import Prediction
from loopml.serving._errors import HttpError, classify
from loopml.serving._limits import BodyWatch, LimitedReceive, declared_too_large
from loopml.serving._runtime import Runtime

log = logging.getLogger("loopml.serving")


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def parse_json(body: bytes) -> Any:
    if not body:
        raise HttpError(400, "bad_json", "the body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "bad_json", f"the body is not valid JSON: {exc}") from None


class PredictHandler:
    """Answers prediction requests for one worker's runtime."""

    def __init__(self, rt: Runtime, pool: ThreadPoolExecutor) -> None:
        self.rt = rt
        self.pool = pool

    async def handle(self, body: bytes) -> tuple[int, bytes]:
        """The status and JSON body of the answer to a ``/predict`` body."""
        rt = self.rt
        try:
            payload = parse_json(body)
            if isinstance(payload, dict) and "rows" in payload:
                rows = payload["rows"]
                if not isinstance(rows, list) or not rows:
                    raise HttpError(
                        422,
                        "bad_rows",
                        "'rows' must be a non-empty list of objects",
                        {"field": "rows"},
                    )
                preds, elapsed = await self.answer(rows)
                return 200, dumps(
                    {
                        "model": rt.name,
                        "predictions": [p.body(rt.spec.top_k) for p in preds],
                        "latency_ms": round(elapsed * 1000, 3),
                    }
                )
            if not isinstance(payload, dict):
                raise HttpError(
                    422, "bad_body", 'send one row as a JSON object, or {"rows": [...]}'
                )
            (pred,), _ = await self.answer([payload])
            return 200, dumps(pred.body(rt.spec.top_k))
        except Exception as exc:
            answer = classify(exc)
            if answer.status >= 500:
                log.error("/predict failed", exc_info=exc)
            rt.metrics.errors.labels(str(answer.status), answer.code).inc()
            return answer.status, answer.body()

    async def answer(self, rows: list[Any]) -> tuple[list[Prediction], float]:
        """Predictions for request rows (raises HttpError/UsageError on bad input): the request's
        limits and the model's presence are checked here, the prediction flow (routing, shadow,
        counting, propensity) is the runtime's."""
        rt = self.rt
        if len(rows) > rt.spec.max_batch:
            raise HttpError(
                413,
                "too_many_rows",
                f"{len(rows)} rows; the limit is {rt.spec.max_batch} per request",
                {"limit": rt.spec.max_batch},
            )
        served = rt.holder.current
        if served is None:
            raise HttpError(503, "no_model", rt.holder.unavailable(), {"alias": rt.spec.alias})
        return await rt.predict(rows, served, self.pool)


class FastPath:
    """ASGI in front of the FastAPI app: every request's body is bounded while it is read
    (:mod:`loopml.serving._limits`), and ``POST /predict`` is answered directly by the handler;
    everything else (and every other scope) goes to the FastAPI app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.watch = BodyWatch()

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler: PredictHandler | None = getattr(self.app.state, "predict", None)
        if scope["type"] != "http" or handler is None:
            await self.app(scope, receive, send)
            return
        spec = handler.rt.spec
        refused = declared_too_large(scope["headers"], spec.max_body_bytes)
        if refused is not None:
            handler.rt.metrics.errors.labels(str(refused.status), refused.code).inc()
            answer = classify(refused)
            body = answer.oip_body() if scope["path"].startswith("/v2/") else answer.body()
            await _respond(send, answer.status, body, answer.headers())
            return
        limited = LimitedReceive(
            receive, spec.max_body_bytes, spec.body_timeout.total_seconds(), self.watch
        )
        if scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, limited, send)
            return
        try:
            body = await limited.read()
        except HttpError as exc:
            handler.rt.metrics.errors.labels(str(exc.status), exc.code).inc()
            answer = classify(exc)
            await _respond(send, answer.status, answer.body(), answer.headers())
            return
        status, data = await handler.handle(body)
        await _respond(send, status, data, [(b"content-type", b"application/json")])


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
