"""Monitoring: the prediction log joined with late labels, drift of every kind, performance over
time, alerts and reports.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(1)
>>> ref = pd.DataFrame({"x": rng.normal(size=4000)})
>>> detect_drift(ref, pd.DataFrame({"x": rng.normal(size=4000)})).drifted
[]
"""

from typing import TYPE_CHECKING

from loopml._lazy import lazy_attributes
from loopml.monitoring._drift import ColumnDrift, DriftResult, detect_drift, drift_of
from loopml.monitoring._profile import (
    ColumnProfile,
    Profile,
    dumps_profile,
    fit_profile,
    model_profile,
)
from loopml.monitoring._shift import Shift, classify

if TYPE_CHECKING:
    from loopml.monitoring._alerts import Alert, Alerts
    from loopml.monitoring._feedback import parse_feedback
    from loopml.monitoring._html import write_html
    from loopml.monitoring._join import FEATURE_PREFIX
    from loopml.monitoring._kept import latest_path
    from loopml.monitoring._labels import binary_truth
    from loopml.monitoring._log import MonitorLog, feedback_stream, predictions_stream
    from loopml.monitoring._monitor import ERROR_REASONS, WindowChoice, choose_window
    from loopml.monitoring._performance import default_metric
    from loopml.monitoring._prometheus import DriftCollector
    from loopml.monitoring._record import PredictionRecord
    from loopml.monitoring._report import (
        LabelAccounting,
        LabelReason,
        LatestDrift,
        MonitoringReport,
        Settings,
        TimelineItem,
        WindowRecord,
    )
    from loopml.monitoring._service import Monitoring

# The drift statistics, profiles and shift classes are pure (numpy, scipy, Arrow). The log, the
# alerts and the service read the stores (SQLAlchemy, DuckDB): loaded on first use, so that
# `from loopml.monitoring import detect_drift` needs no storage.
__getattr__ = lazy_attributes(
    __name__,
    {
        "Alert": "loopml.monitoring._alerts",
        "Alerts": "loopml.monitoring._alerts",
        "FEATURE_PREFIX": "loopml.monitoring._join",
        "binary_truth": "loopml.monitoring._labels",
        "MonitorLog": "loopml.monitoring._log",
        "feedback_stream": "loopml.monitoring._log",
        "predictions_stream": "loopml.monitoring._log",
        "WindowChoice": "loopml.monitoring._monitor",
        "default_metric": "loopml.monitoring._performance",
        "choose_window": "loopml.monitoring._monitor",
        "Monitoring": "loopml.monitoring._service",
        "latest_path": "loopml.monitoring._kept",
        "parse_feedback": "loopml.monitoring._feedback",
        "write_html": "loopml.monitoring._html",
        "DriftCollector": "loopml.monitoring._prometheus",
        "PredictionRecord": "loopml.monitoring._record",
        "ERROR_REASONS": "loopml.monitoring._monitor",
        "MonitoringReport": "loopml.monitoring._report",
        "WindowRecord": "loopml.monitoring._report",
        "TimelineItem": "loopml.monitoring._report",
        "LabelAccounting": "loopml.monitoring._report",
        "LabelReason": "loopml.monitoring._report",
        "Settings": "loopml.monitoring._report",
        "LatestDrift": "loopml.monitoring._report",
    },
)

__all__ = [
    "ERROR_REASONS",
    "FEATURE_PREFIX",
    "Alert",
    "Alerts",
    "ColumnDrift",
    "ColumnProfile",
    "DriftCollector",
    "DriftResult",
    "LabelAccounting",
    "LabelReason",
    "LatestDrift",
    "MonitorLog",
    "Monitoring",
    "MonitoringReport",
    "PredictionRecord",
    "Profile",
    "Settings",
    "Shift",
    "TimelineItem",
    "WindowChoice",
    "WindowRecord",
    "binary_truth",
    "choose_window",
    "classify",
    "default_metric",
    "detect_drift",
    "drift_of",
    "dumps_profile",
    "feedback_stream",
    "fit_profile",
    "latest_path",
    "model_profile",
    "parse_feedback",
    "predictions_stream",
    "write_html",
]
