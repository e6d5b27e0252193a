"""Answering prediction requests: dynamic (computed on demand), static (precomputed, looked up),
hybrid (the head precomputed, the tail computed), consistency for an entity, and the fallback
with its circuit breaker. Framework-free: the HTTP app and the Python API both use it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from loopml.errors import UsageError
from loopml.features import FeatureSet, Flags, OnlineFeatures, encode_key, to_micros
from loopml.monitoring import PredictionRecord
from loopml.serving._holder import ModelHolder, Served
from loopml.serving._predictor import RowPredictor
from loopml.spec import ServingSpec
from loopml.storage import OnlineStore

RESERVED = ("_id", "_at", "_flags")
# A client's own prediction id is kept (a retry is answered, and logged, under the same id) in
# a namespace of its own: server ids start with "p_", a client's with this, so that neither can
# ever take the other's.
CLIENT_ID_PREFIX = "c_"
MAX_CLIENT_ID = 128


class PredictionIds:
    """Prediction ids: ``p_``, 48 bits of milliseconds, this worker's tag (32 random bits drawn
    when it starts: which worker answered), then 80 random bits, in hex (so they sort by time).
    Unguessable, so that no client can claim the ids other callers will get. The randomness is
    read from the OS in blocks, one system call per 400 ids, and hex is cheap: an id costs
    about a microsecond (``loopml.storage.new_id``'s base32 costs 5).

    >>> ids = PredictionIds()
    >>> a, b = ids(), ids()
    >>> len(a), a[:2], a[14:22] == b[14:22], a[22:] != b[22:]
    (42, 'p_', True, True)
    """

    BLOCK = 4000  # bytes of randomness read at once: 400 ids

    def __init__(self, prefix: str = "p") -> None:
        self.prefix = prefix + "_"
        self.worker = os.urandom(4).hex()
        self._random = b""
        self._at = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if self._at >= len(self._random):
                self._random, self._at = os.urandom(self.BLOCK), 0
            rnd = self._random[self._at : self._at + 10]
            self._at += 10
        millis = int(time.time() * 1000) & 0xFFFF_FFFF_FFFF
        return f"{self.prefix}{millis:012x}{self.worker}{rnd.hex()}"


def static_table(model: str, version: int) -> str:
    return f"pred:{model}:{version}"


def consistency_table(model: str) -> str:
    return f"consistent:{model}"


@dataclass
class Prediction:
    """One answer: what the model (or its fallback) said, and how it was reached."""

    id: str
    model: str
    version: int | None
    mode: str  # dynamic | static | consistent | fallback
    output: Any
    task: str
    threshold: float | None = None
    classes: list[Any] | None = None
    fallback: str | None = None
    latency_us: float = 0.0
    features: dict[str, Any] = field(default_factory=dict)
    at: int = 0
    rollout: int | None = None  # the experiment or rollout that routed it
    propensity: float | None = None  # the probability its arm had of being chosen
    # {lookup, window or feature: [flag, ...]}: values not as of the event time, read from the
    # cache, or categories the model never saw (loopml.features._flags)
    flags: Flags | None = None

    def body(self, top_k: int = 3) -> dict[str, Any]:
        """The prediction as the API returns it."""
        out: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "mode": self.mode,
        }
        out["prediction"] = describe(self.task, self.output, self.threshold, self.classes, top_k)
        out["fallback"] = self.fallback
        out["flags"] = self.flags or {}
        out["latency_ms"] = round(self.latency_us / 1000, 3)
        return out

    def record(self) -> PredictionRecord:
        """The prediction as the prediction log keeps it."""
        # Positional, in PredictionRecord's field order: one per request, and keywords cost
        # twice as much to pass.
        return PredictionRecord(
            self.id,
            self.at,
            self.model,
            self.version,
            self.mode,
            self.output,
            self.latency_us,
            self.features,
            self.fallback,
            None,  # of: an answer shadows nothing
            self.rollout,
            self.propensity,
            self.flags,
        )


def describe(
    task: str, output: Any, threshold: float | None, classes: list[Any] | None, top_k: int
) -> dict[str, Any]:
    if output is None:
        return {}
    if task == "binary":
        p = float(output)
        return {
            "probability": p,
            "decision": bool(p >= (threshold if threshold is not None else 0.5)),
            "threshold": threshold,
        }
    if task == "multiclass":
        probs = np.asarray(output, dtype=float)
        order = np.argsort(-probs)[:top_k]
        labels = classes or list(range(len(probs)))
        return {
            "decision": labels[int(order[0])],
            "top": [{"class": labels[int(i)], "probability": float(probs[i])} for i in order],
        }
    if task == "regression":
        return {"value": float(output)}
    return {"score": float(output)}


class Breaker:
    """Opens after ``failures`` consecutive failures of the model (an exception or a missed
    latency budget; never a caller's bad request); after ``cooldown`` seconds one trial call
    goes through (half-open): success closes it, failure opens it again. It keeps why it
    opened, for ``/status`` and ``/metrics``."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.limit = failures
        self.cooldown = cooldown
        self.consecutive = 0
        self.opened_at: float | None = None
        self.reason: str | None = None  # the last failure: "model_error: RuntimeError(...)"
        self.opened = 0  # times it opened
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def allow(self) -> bool:
        if self.opened_at is None:  # the common case, read without the lock
            return True
        with self._lock:
            if self.opened_at is None:
                return True
            if time.monotonic() - self.opened_at >= self.cooldown:
                self.opened_at = time.monotonic()  # one trial per cooldown
                return True
            return False

    def success(self) -> None:
        if self.consecutive == 0 and self.opened_at is None:
            return  # closed already: no lock on the hot path
        with self._lock:
            self.consecutive = 0
            self.opened_at = None

    def failure(self, reason: str) -> bool:
        """Count a model failure; true when it opened the breaker."""
        with self._lock:
            self.consecutive += 1
            self.reason = reason
            if self.consecutive >= self.limit:
                was_open = self.opened_at is not None
                self.opened_at = time.monotonic()
                if not was_open:
                    self.opened += 1
                    return True
            return False

    def status(self) -> dict[str, Any]:
        opened_at = self.opened_at
        state = "closed"
        if opened_at is not None:
            waited = time.monotonic() - opened_at
            state = "half_open" if waited >= self.cooldown else "open"
        return {
            "state": state,
            "failures": self.consecutive,
            "limit": self.limit,
            "reason": self.reason if self.consecutive else None,
            "opened_s_ago": round(time.monotonic() - opened_at, 3) if opened_at else None,
            "cooldown_s": self.cooldown,
            "opened": self.opened,
        }


class Engine:
    """The serving logic of one worker."""

    def __init__(
        self,
        *,
        name: str,
        spec: ServingSpec,
        holder: ModelHolder,
        features: FeatureSet | None,
        online: OnlineFeatures | None,
        store: OnlineStore | None,
        fallback_predictor: RowPredictor | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.holder = holder
        self.fs = features
        self.online = online
        self.store = store
        self.fallback_predictor = fallback_predictor
        self.breaker = Breaker(spec.breaker.failures, spec.breaker.cooldown.total_seconds())
        self.known = set(features.request) if features is not None else None
        self.static_key = list(spec.static.key)
        # Static-table rows (and misses) read in the last feature_cache seconds.
        self._cache_seconds = spec.feature_cache.total_seconds()
        self._static: dict[tuple[str, str], tuple[float, Any]] = {}
        self._new_id = PredictionIds("p")

    # ------------------------------------------------------------------------- validation

    def parse(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Typed request rows (request features and their derived features); a
        :class:`UsageError` names the row and the field that is wrong."""
        out = []
        for i, raw in enumerate(rows):
            where = f"row {i}: " if len(rows) > 1 else ""
            if not isinstance(raw, dict):
                raise UsageError(
                    f"{where}a row must be a JSON object of request fields", details={"row": i}
                )
            if self.known is not None:
                unknown = [k for k in raw if k not in self.known and k not in RESERVED]
                if unknown:
                    raise UsageError(
                        f"{where}unknown field {unknown[0]!r}" + _suggest(unknown[0], self.known),
                        details={"row": i, "field": unknown[0]},
                    )
                missing = [k for k in self.fs.request if k not in raw]  # type: ignore[union-attr]
                if missing:
                    raise UsageError(
                        f"{where}missing field {missing[0]!r} (send null for an unknown value)",
                        details={"row": i, "field": missing[0]},
                    )
            try:
                row = self.online.request_row(raw) if self.online is not None else dict(raw)
            except UsageError as exc:
                raise UsageError(where + exc.message, details={**exc.details, "row": i}) from None
            row["_id"] = _client_id(raw.get("_id"), where, i)
            row["_at"] = _event_time(raw.get("_at"), where, i)
            out.append(row)
        return out

    # -------------------------------------------------------------------------- answering

    def answer(self, rows: list[dict[str, Any]], served: Served) -> list[Prediction]:
        """Predictions by the model path (consistency, then static, then dynamic). Raises when
        the model fails: the caller falls back."""
        out = []
        mode = self.spec.mode
        for row in rows:
            start = time.perf_counter()
            pred = self._consistent(row) if self.spec.consistency is not None else None
            if pred is None and mode in ("static", "hybrid"):
                pred = self._lookup(row, served, mode)
                if pred is None and mode == "static":
                    pred = self.fallback([row], "not_precomputed", served)[0]
            if pred is None:
                values = (
                    self.online.complete(row, at=row.get("_at")) if self.online is not None else row
                )
                output = served.predictor.score(values)
                pred = self._make(row, served.number, "dynamic", output, served, values)
                pred.flags = merge_flags(
                    values.get("_flags"), served.predictor.category_flags(values)
                )
                self._remember(row, pred)
            pred.latency_us = (time.perf_counter() - start) * 1e6
            out.append(pred)
        return out

    def fallback(
        self, rows: list[dict[str, Any]], reason: str, served: Served | None
    ) -> list[Prediction]:
        """Answers without the model: the precomputed value, a smaller model, or a default."""
        out = []
        kind = self.spec.fallback.kind
        for row in rows:
            start = time.perf_counter()
            pred = None
            if kind == "precomputed" and served is not None:
                pred = self._lookup(row, served, "static")
            elif kind == "model" and self.fallback_predictor is not None:
                try:
                    output = self.fallback_predictor.score(row)  # request-time features only
                    pred = self._make(row, None, "fallback", output, served, row)
                except Exception:  # noqa: BLE001 - then the default
                    pred = None
            if pred is None and (kind == "default" or self.spec.fallback.then_default):
                value = self.spec.fallback.value
                if value is None and served is not None:
                    value = served.prior
                pred = self._make(row, None, "fallback", value, served, row)
            if pred is None:
                raise UsageError("no fallback answer for this request", details={"reason": reason})
            pred.mode = "fallback"
            pred.fallback = reason
            pred.latency_us = (time.perf_counter() - start) * 1e6
            out.append(pred)
        return out

    def _make(
        self,
        row: Mapping[str, Any],
        version: int | None,
        mode: str,
        output: Any,
        served: Served | None,
        values: Mapping[str, Any],
    ) -> Prediction:
        model = served.model if served is not None else None
        return Prediction(
            id=row.get("_id") or self.new_id(),
            model=self.name,
            version=version,
            mode=mode,
            output=output,
            task=model.task if model else "binary",
            threshold=model.threshold if model and model.task == "binary" else None,
            classes=model.classes if model and model.task == "multiclass" else None,
            features={k: v for k, v in values.items() if k not in RESERVED},
            at=int(time.time() * 1_000_000),
        )

    @property
    def worker(self) -> str:
        """This worker's tag: the part of every prediction id it answers with that names it."""
        return self._new_id.worker

    def new_id(self) -> str:
        """A fresh prediction id: unguessable (80 random bits after the time), so no client can
        claim the ids other callers will be given."""
        return self._new_id()

    def key_of(self, row: Mapping[str, Any]) -> str | None:
        return encode_key([row.get(k) for k in self.static_key])

    def _lookup(self, row: dict[str, Any], served: Served, mode: str) -> Prediction | None:
        if self.store is None:
            return None
        key = self.key_of(row)
        if key is None:
            return None
        table = static_table(self.name, served.number)
        now = time.monotonic()
        hit = self._static.get((table, key))
        if hit is not None and hit[0] > now:
            stored = hit[1]
        else:
            got = self.store.get_latest(table, [key])[0]
            stored = orjson.loads(got[1]) if got is not None else None
            if self._cache_seconds > 0:
                if len(self._static) > 200_000:
                    self._static.clear()
                self._static[(table, key)] = (now + self._cache_seconds, stored)
        if stored is None:
            return None
        output = np.asarray(stored["o"]) if isinstance(stored["o"], list) else stored["o"]
        return self._make(row, stored["v"], "static", output, served, row)

    def _consistent(self, row: dict[str, Any]) -> Prediction | None:
        spec = self.spec.consistency
        if spec is None or self.store is None:
            return None
        key = encode_key([row.get(k) for k in spec.key])
        if key is None:
            return None
        got = self.store.get_latest(consistency_table(self.name), [key])[0]
        if got is None or got[0] < time.time() - spec.ttl.total_seconds():
            return None
        stored = orjson.loads(got[1])
        served = self.holder.current
        pred = self._make(row, stored["v"], "consistent", stored["o"], served, row)
        return pred

    def _remember(self, row: dict[str, Any], pred: Prediction) -> None:
        spec = self.spec.consistency
        if spec is None or self.store is None:
            return
        key = encode_key([row.get(k) for k in spec.key])
        if key is None:
            return
        output = pred.output.tolist() if isinstance(pred.output, np.ndarray) else pred.output
        self.store.put_latest(
            consistency_table(self.name),
            [(key, time.time(), orjson.dumps({"o": output, "v": pred.version}))],
        )


def _client_id(value: Any, where: str, row: int) -> str | None:
    """A client's ``_id``, namespaced (or None: the server assigns one)."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_CLIENT_ID
        or ":" in value  # ids with ':' are the server's: a ranking's items, a shadow's answer
        or not value.isprintable()
    ):
        raise UsageError(
            f"{where}'_id' must be a string of 1 to {MAX_CLIENT_ID} printable characters "
            f"without ':' (or leave it out: the server assigns one)",
            details={"row": row, "field": "_id"},
        )
    return CLIENT_ID_PREFIX + value


def _event_time(value: Any, where: str, row: int) -> Any:
    """The request's ``_at``, checked (and kept as sent: it is read as of then later); a bad one
    is the caller's error (422), never the model's (it must not count against the breaker)."""
    if value is None:
        return None
    try:
        to_micros(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise UsageError(
            f"{where}'_at' is not a timestamp ({exc}): send an ISO 8601 time or epoch seconds",
            details={"row": row, "field": "_at"},
        ) from None
    return value


def merge_flags(a: Flags | None, b: Flags | None) -> Flags | None:
    """One answer's flags from two sources (the online features', the model's encoding)."""
    if not b:
        return a
    if not a:
        return b
    out = {k: list(v) for k, v in a.items()}
    for name, flags in b.items():
        out.setdefault(name, []).extend(flags)
    return out


def _suggest(name: str, options: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
