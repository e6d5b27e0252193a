"""Everything one serving worker holds: the project's parts, the model holder (hot swap), the
engine, the prediction log and the metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np

from loopml.errors import UsageError
from loopml.features import OnlineFeatures
from loopml.monitoring import ERROR_REASONS, predictions_stream
from loopml.rollout import Assignment, CounterBuffer, Router
from loopml.serving._engine import Engine, Prediction
from loopml.serving._holder import ModelHolder, Served
from loopml.serving._log import PredictionLogger
from loopml.serving._metrics import ServingMetrics
from loopml.serving._parts import HoldsServingParts, ServingParts, serving_parts
from loopml.serving._predictor import RowPredictor
from loopml.spec import ServingSpec

log = logging.getLogger("loopml.serving")

ARM_RETRY_S = 30.0  # an experiment arm that failed to load is tried again after this long


class Runtime:
    """One worker's serving state, built from the parts of a project (``Runtime(project)``
    takes them from a ``Project``). ``on_stop`` is called once the worker has stopped: the app
    factory closes there the project it opened for it."""

    def __init__(
        self,
        parts: ServingParts | HoldsServingParts,
        *,
        spec: ServingSpec | None = None,
        on_stop: Callable[[], object] | None = None,
    ) -> None:
        project = self.parts = serving_parts(parts)
        self.spec = spec or project.spec.serving
        self.name = project.models.name
        self._on_stop = on_stop
        self.metrics = ServingMetrics()
        has_features = project.spec.features is not None
        fs = project.features.feature_set if has_features else None
        self.online: OnlineFeatures | None = (
            OnlineFeatures(
                fs, project.online, cache_seconds=self.spec.feature_cache.total_seconds()
            )
            if fs is not None
            else None
        )
        if self.online is not None:
            self.online.check_store()  # answers flag stale_store while it holds nothing
        self.holder = ModelHolder(
            project.models,
            lambda: self.online,
            alias=self.spec.alias,
            interval=self.spec.watch_interval.total_seconds(),
            on_swap=self._swapped,
            on_failure=lambda _msg: self.metrics.swap_failures.inc(),
        )
        fallback = None
        if self.spec.fallback.kind == "model" and self.spec.fallback.model:
            small = project.models.load(self.spec.fallback.model)
            fallback = RowPredictor(small, online=None)
        self.engine = Engine(
            name=self.name,
            spec=self.spec,
            holder=self.holder,
            features=fs,
            online=self.online,
            store=project.online if has_features or self.spec.mode != "dynamic" else None,
            fallback_predictor=fallback,
        )
        self.logger = (
            PredictionLogger(
                lambda: project.events,
                predictions_stream(self.name),
                batch=self.spec.log.batch,
                interval=self.spec.log.interval.total_seconds(),
                max_queue=self.spec.log.max_queue,
            )
            if self.spec.log.enabled
            else None
        )
        self._drift_gauges(project)
        self.started_at = time.time()
        self._children: dict[tuple[str, int | None], tuple[Any, Any]] = {}
        self._flag_counters: dict[tuple[str, str], Any] = {}
        # Rollouts: the router reads the model's active rollout in the background; the
        # challenger is loaded (and hot-swapped) like the champion; counters are summed here and
        # added to the shared ones on each refresh, never written per request.
        rollouts = project.rollouts
        self.router = Router(rollouts, self.name, unit=project.spec.loop.rollout.unit)
        self.counters = CounterBuffer(rollouts)
        self.challenger = ModelHolder(
            project.models,
            lambda: self.online,
            alias="challenger",
            interval=self.spec.watch_interval.total_seconds(),
            fallback=False,  # a challenger that fails is not replaced by an older one
        )
        self.rollout_interval = min(1.0, self.spec.watch_interval.total_seconds())
        self._shadow_pool: ThreadPoolExecutor | None = None
        self._rollout_stop = threading.Event()
        self._rollout_thread: threading.Thread | None = None
        self.shadowed = 0
        self.shadow_errors = 0
        # An experiment's arms, loaded by version (the champion's own Served is reused).
        self.arm_models: dict[int, Served] = {}
        self.arm_errors: dict[int, str] = {}
        self._arm_failed_at: dict[int, float] = {}
        self._bandit_updated_at = time.monotonic()  # the first update after one interval
        self.bandit_updates = 0

    def _drift_gauges(self, project: ServingParts) -> None:
        """The monitor's latest drift scores, exported with the serving metrics."""
        from loopml.monitoring import DriftCollector, latest_path

        path = project.lake_files.path(latest_path(self.name))
        if "://" not in path:  # a local lake; remote ones are read by the monitor's own export
            self.metrics.add_collector(DriftCollector(path))

    def _swapped(self, served: Served) -> None:
        self.metrics.swaps.inc()
        self.metrics.version.labels(self.name).set(served.number)

    def start(self) -> None:
        self.holder.start()
        if self.logger is not None:
            self.logger.start()
        self.refresh_rollout()
        self._rollout_thread = threading.Thread(
            target=self._watch_rollout, name="loopml-rollout", daemon=True
        )
        self._rollout_thread.start()
        # Everything loaded so far lives as long as the worker: keep it out of the collector's
        # full passes, which would otherwise pause requests for milliseconds.
        gc.collect()
        gc.freeze()

    def stop(self) -> None:
        self._rollout_stop.set()
        if self._rollout_thread is not None:
            self._rollout_thread.join(timeout=10)
            self._rollout_thread = None
        if self._shadow_pool is not None:
            self._shadow_pool.shutdown(wait=True)
            self._shadow_pool = None
        self.counters.flush()
        self.holder.stop()
        if self.logger is not None:
            self.logger.stop()
        if self._on_stop is not None:
            self._on_stop()
        # Hand the frozen objects back to the collector: a worker stopped inside a longer-lived
        # process (the demo, tests) must not keep them, nor its native handles, to the end.
        gc.unfreeze()

    def record(self, pred: Prediction, seconds: float) -> None:
        children = self._children.get((pred.mode, pred.version))
        if children is None:
            version = str(pred.version) if pred.version is not None else "none"
            children = (
                self.metrics.requests.labels("predict", pred.mode, version),
                self.metrics.latency.labels(pred.mode, version),
            )
            self._children[(pred.mode, pred.version)] = children
        children[0].inc()
        children[1].observe(seconds)
        if pred.fallback is not None:
            self.metrics.fallbacks.labels(pred.fallback).inc()
        if pred.flags:
            self.count_flags(pred.flags)
        if self.logger is not None:
            self.logger.log(pred.record())

    def count_flags(self, flags: dict[str, list[str]]) -> None:
        """Add one answer's flags to ``loopml_feature_flags``."""
        counters = self._flag_counters
        for name, kinds in flags.items():
            for kind in kinds:
                counter = counters.get((name, kind))
                if counter is None:
                    counter = counters[(name, kind)] = self.metrics.flags.labels(name, kind)
                counter.inc()

    # ------------------------------------------------------------------------------ rollouts

    def refresh_rollout(self) -> None:
        """Read the active rollout, load its challenger, flush the counters."""
        rollout = self.router.refresh()
        if rollout is not None and rollout.active:
            if rollout.is_experiment:
                self._load_arms(rollout.arms)
            else:
                current = self.challenger.current
                if current is None or current.number != rollout.challenger:
                    self.challenger.poll()  # a failing challenger waits for its backoff
        elif self.arm_models:
            self.arm_models = {}
        self.counters.flush()

    def _load_arms(self, arms: list[int]) -> None:
        """Load the experiment's versions not held yet (each checked and smoke-tested like the
        champion); one that fails keeps the experiment off this worker (all to the champion)."""
        loaded = {v: s for v, s in self.arm_models.items() if v in arms}
        champion = self.holder.current
        now = time.monotonic()
        for v in arms:
            if v in loaded:
                continue
            if now - self._arm_failed_at.get(v, -ARM_RETRY_S) < ARM_RETRY_S:
                continue  # failed a moment ago: retried later, not on every refresh
            if champion is not None and champion.number == v:
                loaded[v] = champion
                continue
            try:
                mv = self.parts.registry.get(self.name, v)
                loaded[v] = self.holder.load_version(mv)
                self.arm_errors.pop(v, None)
            except Exception as exc:  # noqa: BLE001 - the experiment waits; serving goes on
                self.arm_errors[v] = str(exc)
                self._arm_failed_at[v] = now
                log.error("experiment arm %s:%s failed to load: %s", self.name, v, exc)
        self.arm_models = loaded

    def arms_ready(self, arms: list[int]) -> bool:
        held = self.arm_models
        return all(v in held for v in arms)

    def _watch_rollout(self) -> None:
        while not self._rollout_stop.wait(self.rollout_interval):
            try:
                self.refresh_rollout()
            except Exception:
                log.exception("refreshing the rollout failed")
            self._maybe_update_bandit()
            if self.online is not None and self.online.unwritten:
                try:  # until the store is materialized
                    self.online.check_store()
                except Exception:
                    log.exception("checking the online store failed")

    def _maybe_update_bandit(self) -> None:
        """A bandit learns while it serves: every ``serving.bandit_update`` this worker lands
        the prediction and feedback streams and recomputes the arms' rewards (stored only when
        newer than the shared snapshot, so workers doing it at once are harmless); every worker
        routes by the result from its next refresh."""
        every = self.spec.bandit_update
        rollout = self.router.current
        if every is None or rollout is None or not rollout.active or rollout.strategy != "bandit":
            return
        now = time.monotonic()
        if now - self._bandit_updated_at < every.total_seconds():
            return
        self._bandit_updated_at = now
        try:
            from loopml.rollout import Experiments

            parts = self.parts
            Experiments(
                rollouts=parts.rollouts,
                models=parts.models,
                registry=parts.registry,
                monitoring=parts.monitoring,
            ).evaluate(rollout)
            self.bandit_updates += 1
        except Exception as exc:  # noqa: BLE001 - serving goes on with the last snapshot
            log.warning("updating the bandit's rewards failed: %s", exc)

    def assign(
        self, rows: list[dict[str, Any]], served: Served, challenger: Served | None
    ) -> Assignment:
        """Which version answers each row and which rows are shadowed, by the rollout's one
        rule (:func:`loopml.rollout.assign`), ``challenger`` being the one this request holds.
        Without an active rollout, every row goes to the champion and nothing else happens."""
        rollout = self.router.current
        if rollout is None or not rollout.active:
            return Assignment.champion(len(rows), served.number)
        if rollout.is_experiment:
            ready = self.arms_ready(rollout.arms)
        else:
            ready = challenger is not None and challenger.number == rollout.challenger
        for row in rows:
            if not row.get("_id"):
                row["_id"] = self.engine.new_id()  # routed by it, and answered under it
        return self.router.assign(
            [row["_id"] for row in rows], rows, champion=served.number, ready=ready
        )

    def _holder_of(
        self, version: int, served: Served, challenger: Served | None, a: Assignment
    ) -> Served:
        """The loaded version that answers an assignment's rows: the champion, an
        experiment's arm, or the challenger the rows were assigned with."""
        if version == served.number:
            return served
        if a.propensity is not None or challenger is None:
            return self.arm_models[version]
        return challenger

    async def predict(
        self, rows: list[Any], served: Served, pool: Executor
    ) -> tuple[list[Prediction], float]:
        """Predictions for request rows under the model's rollout, and the seconds they took:
        parsed (a UsageError naming the field, before any model work), assigned, each version
        answering its own rows (the fallback when it fails or is slow: ``pool`` runs an isolated
        model), every answer recorded and counted under the rollout, with an experiment's
        propensity, and the other model scoring the shadowed answers in the background."""
        started = time.perf_counter()
        engine = self.engine
        parsed = engine.parse(rows)
        # Read once: the background refresh may swap the challenger while this request runs.
        challenger = self.challenger.current
        a = self.assign(parsed, served, challenger)
        versions = a.versions()
        if len(versions) == 1:
            holder = self._holder_of(versions[0], served, challenger, a)
            preds = await self._model_or_fallback(parsed, holder, pool)
        else:  # each version answers its own rows
            answered: list[Prediction | None] = [None] * len(parsed)
            for version in versions:
                idx = a.rows(version).tolist()
                holder = self._holder_of(version, served, challenger, a)
                out = await self._model_or_fallback([parsed[i] for i in idx], holder, pool)
                for i, p in zip(idx, out, strict=True):
                    answered[i] = p
            preds = [p for p in answered if p is not None]
        elapsed = time.perf_counter() - started
        each = elapsed / len(preds)
        rollout_id = a.rollout
        if a.propensity is not None:  # an experiment's answers: logged with their arm's chance
            for p, chance in zip(preds, a.propensity.tolist(), strict=True):
                p.rollout, p.propensity = rollout_id, chance
        for p in preds:
            p.latency_us = each * 1e6
            self.record(p, each)
            if rollout_id is not None:
                self.count(rollout_id, p, each)
        if rollout_id is not None and a.propensity is None:
            shadowed = np.flatnonzero(a.shadow).tolist()
            if shadowed:
                self.shadow([preds[i] for i in shadowed if preds[i].fallback is None], challenger)
            if (
                challenger is not None
                and challenger.number != served.number  # promoted under a running canary
                and challenger.number in versions
            ):
                # a canary: the champion scores the challenger's answers too
                theirs = challenger.number
                self.shadow(
                    [p for p in preds if p.version == theirs and p.fallback is None], served
                )
        return preds, elapsed

    async def _model_or_fallback(
        self, rows: list[dict[str, Any]], served: Served, pool: Executor
    ) -> list[Prediction]:
        engine = self.engine
        if not engine.breaker.allow():
            return engine.fallback(rows, "breaker_open", served)
        budget = self.spec.latency_budget.total_seconds() if self.spec.latency_budget else None
        try:
            if self.spec.isolated:
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(pool, engine.answer, rows, served)
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
            self.metrics.breaker_open.set(0)
        return preds

    def _failed(self, kind: str, what: str) -> None:
        """A model failure counted by the breaker, and the breaker's state in the metrics."""
        breaker = self.engine.breaker
        if breaker.failure(f"{kind}: {what}"):
            log.error(
                "the circuit breaker opened after %s failures: %s: %s", breaker.limit, kind, what
            )
            self.metrics.breaker_opened.labels(kind).inc()
        self.metrics.breaker_open.set(1 if breaker.open else 0)

    def count(self, rollout_id: int, pred: Prediction, seconds: float) -> None:
        if pred.version is None:
            return
        self.counters.add(rollout_id, pred.version, "requests")
        if pred.fallback in ERROR_REASONS:
            self.counters.add(rollout_id, pred.version, "errors")
        self.counters.add(rollout_id, pred.version, "latency_us", seconds * 1e6)

    def shadow(self, preds: list[Prediction], served: Served | None) -> None:
        """Score ``served`` on these answered requests in the background and log its
        predictions beside the answers (never answering with them): the challenger on the
        champion's answers (a shadow), the champion on the challenger's (a canary), so that the
        rollout compares the two on the same requests."""
        if served is None or not preds or self.logger is None:
            return
        if self._shadow_pool is None:
            self._shadow_pool = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="loopml-shadow"
            )
        rollout = self.router.current
        rollout_id = rollout.id if rollout is not None else None
        self._shadow_pool.submit(self._score_shadow, served, preds, rollout_id)

    def _score_shadow(
        self, served: Served, preds: list[Prediction], rollout_id: int | None
    ) -> None:
        for pred in preds:
            started = time.perf_counter()
            try:
                output = served.predictor.score(pred.features)
            except Exception as exc:  # noqa: BLE001 - a failing shadow never affects serving
                self.shadow_errors += 1
                log.warning("the shadow %s failed: %r", served.version.ref, exc)
                if rollout_id is not None:
                    self.counters.add(rollout_id, served.number, "errors")
                continue
            seconds = time.perf_counter() - started
            record = pred.record()
            record.id, record.of = f"{pred.id}:shadow", pred.id
            record.version, record.mode, record.fallback = served.number, "shadow", None
            record.output, record.latency_us = output, seconds * 1e6
            assert self.logger is not None
            self.logger.log(record)
            self.shadowed += 1
            if rollout_id is not None:
                self.counters.add(rollout_id, served.number, "shadowed")

    def refresh_gauges(self) -> None:
        self.metrics.fallback.set(1 if self.holder.serving_fallback else 0)
        if self.logger is not None:
            dropped = self.logger.dropped - getattr(self, "_dropped_seen", 0)
            if dropped > 0:
                self.metrics.log_dropped.inc(dropped)
                self._dropped_seen = self.logger.dropped

    def publish(self, source: str, rows: list[dict[str, Any]]) -> int:
        return self.parts.features.publish(source, rows)

    def status(self) -> dict[str, Any]:
        current = self.holder.current
        return {
            "ready": current is not None,
            "model": self.name,
            "mode": self.spec.mode,
            "worker": self.engine.worker,  # the tag in the prediction ids this worker answers
            "serving": self.holder.status(),
            # Why nothing answers: which version, file and check failed (503s until it loads).
            "unavailable": None if current is not None else self.holder.unavailable(),
            "rollout": self._rollout_status(),
            "breaker_open": self.engine.breaker.open,
            "breaker": self.engine.breaker.status(),
            # Lookups and windows the online store holds nothing for (answers flag stale_store).
            "online_store_empty": sorted(self.online.unwritten) if self.online else [],
            "log": {
                "written": self.logger.written if self.logger else 0,
                "dropped": self.logger.dropped if self.logger else 0,
                "queued": len(self.logger._queue) if self.logger else 0,
            },
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    def _rollout_status(self) -> dict[str, Any] | None:
        r = self.router.current
        if r is None or not r.active:
            return None
        return {
            "id": r.id,
            "strategy": r.strategy,
            "challenger": r.challenger,
            "arms": r.arms if r.is_experiment else None,
            "arms_loaded": sorted(self.arm_models) if r.is_experiment else None,
            "arm_errors": {str(v): e for v, e in self.arm_errors.items() if v in r.arms}
            if r.is_experiment
            else None,
            "share": r.share,
            "shadow": r.shadow,
            "challenger_loaded": self.challenger.current.number
            if self.challenger.current
            else None,
            "shadowed": self.shadowed,
        }
