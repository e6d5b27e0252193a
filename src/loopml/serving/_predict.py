"""``/predict``: from a request body to a response body, without raising.

The handler sits under both the FastAPI route (for the docs) and a plain ASGI fast path that
answers ``POST /predict`` before any framework code runs (the framework would cost more than the
model). Bad input gets a 4xx naming the field; a failing or slow model gets the fallback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from loopml.errors import UsageError
from loopml.serving._engine import Engine, Prediction
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
        """Predictions for request rows (raises HttpError/UsageError on bad input)."""
        rt = self.rt
        started = time.perf_counter()
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
        engine: Engine = rt.engine
        parsed = engine.parse(rows)  # client errors: 422 naming the field, before any model work
        groups, shadowed, rollout_id, propensity = rt.split(parsed, served)
        if len(groups) == 1:
            preds = await self._model_or_fallback(engine, parsed, groups[0][0])
        else:  # a canary: each version answers its own rows
            answered: list[Prediction | None] = [None] * len(parsed)
            for version, idx in groups:
                out = await self._model_or_fallback(engine, [parsed[i] for i in idx], version)
                for i, p in zip(idx, out, strict=True):
                    answered[i] = p
            preds = [p for p in answered if p is not None]
        elapsed = time.perf_counter() - started
        each = elapsed / len(preds)
        if propensity is not None:  # an experiment's answers: logged with their arm's chance
            for p, chance in zip(preds, propensity, strict=True):
                p.rollout, p.propensity = rollout_id, chance
        for p in preds:
            p.latency_us = each * 1e6
            rt.record(p, each)
            if rollout_id is not None:
                rt.count(rollout_id, p, each)
        if shadowed:
            rt.shadow(
                [preds[i] for i in shadowed if preds[i].fallback is None], rt.challenger.current
            )
        if len(groups) > 1 and propensity is None:
            # a canary: the champion scores the challenger's answers too
            theirs = groups[1][0].number
            rt.shadow([p for p in preds if p.version == theirs and p.fallback is None], served)
        return preds, elapsed

    async def _model_or_fallback(
        self, engine: Engine, rows: list[dict[str, Any]], served: Any
    ) -> list[Prediction]:
        rt = self.rt
        if not engine.breaker.allow():
            return engine.fallback(rows, "breaker_open", served)
        budget = rt.spec.latency_budget.total_seconds() if rt.spec.latency_budget else None
        try:
            if rt.spec.isolated:
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(self.pool, engine.answer, rows, served)
                preds = await asyncio.wait_for(future, budget) if budget else await future
            else:
                preds = engine.answer(rows, served)
        except TimeoutError:
            self._failed("latency_budget", f"no answer within {budget:g} s")
            return engine.fallback(rows, "latency_budget", served)
        except UsageError:
            raise  # the caller's error (a 4xx): never counted against the model
        except Exception as exc:  # noqa: BLE001 - a failing model is answered by the fallback
            log.warning("the model failed: %r", exc)
            self._failed("model_error", repr(exc)[:300])
            return engine.fallback(rows, "model_error", served)
        if engine.breaker.consecutive:
            engine.breaker.success()
            rt.metrics.breaker_open.set(0)
        return preds

    def _failed(self, kind: str, what: str) -> None:
        """A model failure counted by the breaker, and the breaker's state in the metrics."""
        rt = self.rt
        breaker = rt.engine.breaker
        if breaker.failure(f"{kind}: {what}"):
            log.error(
                "the circuit breaker opened after %s failures: %s: %s", breaker.limit, kind, what
            )
            rt.metrics.breaker_opened.labels(kind).inc()
        rt.metrics.breaker_open.set(1 if breaker.open else 0)


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
