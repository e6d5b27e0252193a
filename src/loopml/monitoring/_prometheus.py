"""Drift scores as Prometheus gauges: the latest monitor run's numbers, read from the file the
monitor publishes (``monitoring/<model>/latest.json``), so every serving worker exports the same
values without computing anything."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

KINDS = ("covariate", "label", "concept")


class DriftCollector(Collector):
    """Exports ``loopml_drift_score{model,feature}`` (effect size over its calibrated threshold:
    above 1 is drift), ``loopml_drift_p_value{model,feature}`` (adjusted across features),
    ``loopml_drift_share{model}``, ``loopml_prediction_drift_score``,
    ``loopml_label_drift_score``, ``loopml_shift{model,kind}`` (1 while flagged),
    ``loopml_performance{model,metric,source}`` (realized or estimated) and
    ``loopml_monitor_window_end_seconds``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: float | None = None
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any] | None:
        try:
            stamp = os.stat(self.path).st_mtime
        except OSError:
            return None
        if stamp != self._stamp:
            try:
                with open(self.path, "rb") as f:
                    self._data = orjson.loads(f.read())
                self._stamp = stamp
            except (OSError, orjson.JSONDecodeError):
                return self._data
        return self._data

    def collect(self) -> Iterator[GaugeMetricFamily]:
        data = self._load()
        if not data:
            return
        model = str(data.get("model", ""))
        score = GaugeMetricFamily(
            "loopml_drift_score",
            "Drift of a feature in the latest monitored window: effect size over its calibrated threshold.",
            labels=["model", "feature"],
        )
        pvalue = GaugeMetricFamily(
            "loopml_drift_p_value",
            "Adjusted p-value of a feature's drift test in the latest monitored window.",
            labels=["model", "feature"],
        )
        for name, v in (data.get("features") or {}).items():
            if v is not None:
                score.add_metric([model, name], float(v))
        for name, v in (data.get("pvalues") or {}).items():
            if v is not None:
                pvalue.add_metric([model, name], float(v))
        yield score
        yield pvalue
        for metric, key, text in (
            ("loopml_drift_share", "share", "Share of features drifted in the latest window."),
            ("loopml_prediction_drift_score", "prediction", "Drift score of the predictions."),
            ("loopml_label_drift_score", "label", "Drift score of the labels."),
        ):
            g = GaugeMetricFamily(metric, text, labels=["model"])
            if data.get(key) is not None:
                g.add_metric([model], float(data[key]))
            yield g
        shift = GaugeMetricFamily(
            "loopml_shift",
            "1 while the latest window shows this kind of shift.",
            labels=["model", "kind"],
        )
        kinds = set(data.get("shift") or [])
        for kind in KINDS:
            shift.add_metric([model, kind], 1.0 if kind in kinds else 0.0)
        yield shift
        perf = GaugeMetricFamily(
            "loopml_performance",
            "Model performance in the latest window, realized (labels) or estimated (no labels).",
            labels=["model", "metric", "source"],
        )
        for source in ("performance", "estimated"):
            for name, v in (data.get(source) or {}).items():
                if isinstance(v, int | float):
                    perf.add_metric(
                        [model, name, "realized" if source == "performance" else "estimated"],
                        float(v),
                    )
        yield perf
