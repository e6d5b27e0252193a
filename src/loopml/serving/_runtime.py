"""Everything one serving worker holds: the project, the model holder (hot swap), the engine,
the prediction log and the metrics."""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from loopml._project import Project
from loopml.features import OnlineFeatures
from loopml.monitoring._log import predictions_stream
from loopml.serving._engine import Engine, Prediction
from loopml.serving._holder import ModelHolder, Served
from loopml.serving._log import PredictionLogger
from loopml.serving._metrics import ServingMetrics
from loopml.serving._predictor import RowPredictor
from loopml.spec import ServingSpec


class Runtime:
    """One worker's serving state."""

    def __init__(
        self, project: Project, *, spec: ServingSpec | None = None, own_project: bool = False
    ) -> None:
        self.project = project
        self.spec = spec or project.spec.serving
        self.name = project.models.name
        self._own = own_project
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

    def _drift_gauges(self, project: Project) -> None:
        """The monitor's latest drift scores, exported with the serving metrics."""
        from loopml.monitoring._prometheus import DriftCollector
        from loopml.monitoring._service import latest_path

        path = project.lake_files.path(latest_path(self.name))
        if "://" not in path:  # a local lake; remote ones are read by the monitor's own export
            self.metrics.add_collector(DriftCollector(path))

    @classmethod
    def open(cls, root: str | Path) -> Runtime:
        return cls(Project.open(root), own_project=True)

    def _swapped(self, served: Served) -> None:
        self.metrics.swaps.inc()
        self.metrics.version.labels(self.name).set(served.number)

    def start(self) -> None:
        self.holder.start()
        if self.logger is not None:
            self.logger.start()
        # Everything loaded so far lives as long as the worker: keep it out of the collector's
        # full passes, which would otherwise pause requests for milliseconds.
        gc.collect()
        gc.freeze()

    def stop(self) -> None:
        self.holder.stop()
        if self.logger is not None:
            self.logger.stop()
        if self._own:
            self.project.close()
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
        if self.logger is not None:
            self.logger.log(pred.log_entry())

    def refresh_gauges(self) -> None:
        if self.logger is not None:
            dropped = self.logger.dropped - getattr(self, "_dropped_seen", 0)
            if dropped > 0:
                self.metrics.log_dropped.inc(dropped)
                self._dropped_seen = self.logger.dropped

    def publish(self, source: str, rows: list[dict[str, Any]]) -> int:
        return self.project.features.publish(source, rows)

    def status(self) -> dict[str, Any]:
        current = self.holder.current
        return {
            "ready": current is not None,
            "model": self.name,
            "mode": self.spec.mode,
            "serving": self.holder.status(),
            "breaker_open": self.engine.breaker.open,
            "log": {
                "written": self.logger.written if self.logger else 0,
                "dropped": self.logger.dropped if self.logger else 0,
                "queued": len(self.logger._queue) if self.logger else 0,
            },
            "uptime_s": round(time.time() - self.started_at, 1),
        }
