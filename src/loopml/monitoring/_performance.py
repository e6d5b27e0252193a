"""Performance in a window: realized once labels have arrived, estimated before they have.

The estimate is confidence-based (as in CBPE): for a calibrated binary classifier a prediction
of probability p is a positive with probability p, so the expected confusion matrix, the
expected ROC and precision-recall curves and the expected log loss follow from the predicted
probabilities alone.

>>> import numpy as np
>>> estimated("binary", np.array([0.9, 0.8, 0.2, 0.1]), 0.5)["accuracy"]
0.85
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from loopml.evaluation import higher_is_better, metrics

DEFAULT_METRIC = {"binary": "pr_auc", "multiclass": "macro_f1", "regression": "rmse"}


def default_metric(task: str | None) -> str:
    return DEFAULT_METRIC.get(task or "binary", "pr_auc")


def realized(
    task: str,
    y: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float | None,
    classes: list[Any] | None = None,
) -> dict[str, float]:
    """The task's metrics on the labelled rows of a window (empty when there are none)."""
    if len(y) == 0:
        return {}
    try:
        if task == "binary":
            out = metrics("binary", y.astype(bool), scores, threshold=threshold or 0.5)
        elif task == "multiclass":
            out = metrics("multiclass", y, scores, classes=classes)
        else:
            out = metrics("regression", y.astype(float), scores.astype(float))
    except Exception as exc:  # noqa: BLE001 - a window's odd labels must not stop the monitor
        return {"error": str(exc)}  # type: ignore[dict-item]
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float)}


def estimated(task: str, scores: np.ndarray, threshold: float | None) -> dict[str, float]:
    """Label-free estimates for a calibrated binary classifier (empty for other tasks)."""
    if task != "binary" or len(scores) == 0:
        return {}
    p = np.clip(np.asarray(scores, dtype=float), 1e-12, 1 - 1e-12)
    t = 0.5 if threshold is None else threshold
    pred = p >= t
    tp, fp = p[pred].sum(), (1 - p[pred]).sum()
    fn, tn = p[~pred].sum(), (1 - p[~pred]).sum()
    order = np.argsort(-p, kind="mergesort")
    tps, fps = np.cumsum(p[order]), np.cumsum(1 - p[order])
    pos, neg = tps[-1], fps[-1]
    tpr, fpr = np.r_[0.0, tps / pos], np.r_[0.0, fps / neg]
    precision = tps / (tps + fps)
    return {
        "roc_auc": float(np.trapezoid(tpr, fpr)),
        "pr_auc": float((np.diff(tpr) * precision).sum()),
        "log_loss": float(-(p * np.log(p) + (1 - p) * np.log(1 - p)).mean()),
        "brier": float((p * (1 - p)).mean()),
        "accuracy": float((tp + tn) / len(p)),
        "precision": float(tp / (tp + fp)) if tp + fp > 0 else 0.0,
        "recall": float(tp / (tp + fn)) if tp + fn > 0 else 0.0,
        "f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn > 0 else 0.0,
        "positive_rate": float(p.mean()),
    }


def calibration_gap(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Observed minus predicted positive rate, with the z-test of a calibrated model (each
    label a Bernoulli of its predicted probability)."""
    if len(y) == 0:
        return {}
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    var = float((p * (1 - p)).sum())
    gap = float(y.mean() - p.mean())
    z = float((y.sum() - p.sum()) / math.sqrt(var)) if var > 0 else 0.0
    return {"gap": gap, "z": z, "p_value": float(2 * stats.norm.sf(abs(z)))}


def decay(
    metric: str,
    value: float | None,
    reference: float | None,
    *,
    max_drop: float,
    relative: bool,
    natural: float = 0.0,
) -> dict[str, Any]:
    """How far a realized metric fell from the reference value (positive: worse). It is decay
    when the drop exceeds both ``max_drop`` and the ``natural`` variation the reference shows
    between its own chunks."""
    if value is None or reference is None or not np.isfinite(value) or not np.isfinite(reference):
        return {"metric": metric, "drop": None, "decayed": False}
    drop = (reference - value) if higher_is_better(metric) else (value - reference)
    limit = max(max_drop * abs(reference) if relative else max_drop, natural)
    return {
        "metric": metric,
        "value": float(value),
        "reference": float(reference),
        "drop": float(drop),
        "limit": float(limit),
        "decayed": bool(drop > limit),
    }


def natural_variation(reference: dict[str, Any], metric: str, n: int) -> float:
    """How much worse than the reference value the reference's own chunks got at worst, scaled
    to a window of ``n`` labelled rows."""
    chunks = (reference.get("chunk_metrics") or {}).get(metric)
    ref = reference.get(metric)
    if not chunks or ref is None:
        return 0.0
    worst = min(chunks) if higher_is_better(metric) else max(chunks)
    spread = max(0.0, (ref - worst) if higher_is_better(metric) else (worst - ref))
    m = reference.get("metric_chunk_rows") or 0
    if m and 0 < n < m:
        spread *= math.sqrt(m / n)
    return float(spread)
