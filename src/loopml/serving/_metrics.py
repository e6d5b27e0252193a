"""Prometheus metrics of a serving process (or of all workers, in multiprocess mode)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Requests, latency by mode and version, fallbacks, errors, swaps, the prediction log."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "loopml_requests",
            "Prediction requests answered.",
            ["endpoint", "mode", "version"],
            registry=r,
        )
        self.latency = Histogram(
            "loopml_request_latency_seconds",
            "Time to answer a prediction request.",
            ["mode", "version"],
            buckets=BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "loopml_fallbacks", "Predictions answered by the fallback.", ["reason"], registry=r
        )
        self.errors = Counter(
            "loopml_errors", "Requests that failed.", ["status", "code"], registry=r
        )
        self.swaps = Counter("loopml_model_swaps", "Model versions swapped in.", registry=r)
        self.swap_failures = Counter(
            "loopml_model_swap_failures", "New versions that failed to load.", registry=r
        )
        self.fallback = Gauge(
            "loopml_model_fallback",
            "1 while the alias's version fails to load and an earlier one is served "
            "(/status says which version, file and check failed).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.version = Gauge(
            "loopml_model_version",
            "The version being served.",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_open = Gauge(
            "loopml_breaker_open",
            "1 while the circuit breaker is open.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_opened = Counter(
            "loopml_breaker_opened",
            "Times the circuit breaker opened, by the kind of the failure that opened it.",
            ["reason"],
            registry=r,
        )
        self.flags = Counter(
            "loopml_feature_flags",
            (
                "Answers whose values were flagged, by lookup, window or feature and flag: "
                "newer_than_event, older_than_ttl, from_cache, stale_store, unseen_category, "
                "missing_category."
            ),
            ["feature", "flag"],
            registry=r,
        )
        self.log_dropped = Counter(
            "loopml_prediction_log_dropped", "Predictions not written to the log.", registry=r
        )

        self._extra: list[Any] = []

    def add_collector(self, collector: Any) -> None:
        """A collector exported beside the serving metrics (the monitor's drift gauges)."""
        self.registry.register(collector)
        self._extra.append(collector)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            for c in self._extra:
                merged.register(c)
            return generate_latest(merged)
        return generate_latest(self.registry)

    def sample(self, name: str, labels: dict[str, Any] | None = None) -> float:
        """The current value of a sample (for tests and the demo)."""
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else float(value)
