"""Drift scores as Prometheus gauges: the latest monitor run's numbers, read from the file the
monitor publishes (``monitoring/<model>/latest.json``), so every serving worker exports the same
values without computing anything."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import ValidationError

from loopml.monitoring._report import LatestDrift

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
        self._data: LatestDrift | None = None

    def _load(self) -> LatestDrift | None:
        try:
            stamp = os.stat(self.path).st_mtime
        except OSError:
            return None
        if stamp != self._stamp:
            try:
                with open(self.path, "rb") as f:
                    self._data = LatestDrift.model_validate_json(f.read())
                self._stamp = stamp
            except (OSError, ValidationError):  # half-written or foreign: keep the last good one
                return self._data
        return self._data

    def collect(self) -> Iterator[GaugeMetricFamily]:
        data = self._load()
        if not data:
            return
        model = data.model
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
        for name, s in data.features.items():
            if s is not None:
                score.add_metric([model, name], float(s))
        for name, p in data.pvalues.items():
            if p is not None:
                pvalue.add_metric([model, name], float(p))
        yield score
        yield pvalue
        for metric, value, text in (
            ("loopml_drift_share", data.share, "Share of features drifted in the latest window."),
            ("loopml_prediction_drift_score", data.prediction, "Drift score of the predictions."),
            ("loopml_label_drift_score", data.label, "Drift score of the labels."),
        ):
            g = GaugeMetricFamily(metric, text, labels=["model"])
            if value is not None:
                g.add_metric([model], float(value))
            yield g
        shift = GaugeMetricFamily(
            "loopml_shift",
            "1 while the latest window shows this kind of shift.",
            labels=["model", "kind"],
        )
        kinds = set(data.shift)
        for kind in KINDS:
            shift.add_metric([model, kind], 1.0 if kind in kinds else 0.0)
        yield shift
        perf = GaugeMetricFamily(
            "loopml_performance",
            "Model performance in the latest window, realized (labels) or estimated (no labels).",
            labels=["model", "metric", "source"],
        )
        sources: tuple[tuple[str, Mapping[str, object]], ...] = (
            ("realized", data.performance),
            ("estimated", data.estimated),
        )
        for source, values in sources:
            for name, v in values.items():
                if isinstance(v, int | float):  # not a missing value, nor an error's text
                    perf.add_metric([model, name, source], float(v))
        yield perf
