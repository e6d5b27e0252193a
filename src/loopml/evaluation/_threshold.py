"""Choosing the decision threshold of a binary classifier on validation data."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from loopml.errors import UsageError
from loopml.evaluation._args import check_float
from loopml.evaluation._calibration import binary_inputs
from loopml.evaluation._metrics import binary_curve

THRESHOLD_METRICS = ("f1", "precision", "recall", "youden")


def best_threshold(
    y_true: Any,
    y_prob: Any,
    *,
    metric: Literal["f1", "precision", "recall", "youden"] = "f1",
    min_precision: float | None = None,
) -> tuple[float, float]:
    """The threshold ``t`` (predict positive when ``y_prob >= t``) that maximizes ``metric``, and
    the metric's value there.

    Every distinct value of ``y_prob`` is tried, so the answer is exact (the candidates of
    scikit-learn's ``precision_recall_curve``) and :func:`metrics` with ``threshold=t`` reports
    the same value. ``metric`` is ``"f1"``, ``"precision"``, ``"recall"`` or ``"youden"`` (Youden's
    J = TPR - FPR). ``min_precision`` keeps only thresholds whose precision reaches it, as in
    ``metric="recall", min_precision=0.9`` ("the most recall at 90 % precision").

    Ties go to the threshold with the higher precision (for ``metric="precision"``: the higher
    recall), then to the higher threshold. A :class:`~loopml.errors.UsageError` is raised when
    ``y_true`` has no positives (or, for Youden's J, no negatives), or when no threshold reaches
    ``min_precision``; its details carry the best precision there is.

    >>> best_threshold([0, 0, 1, 1, 0, 1], [0.1, 0.3, 0.35, 0.8, 0.4, 0.6])
    (0.35, 0.8571428571428571)
    """
    y, p = binary_inputs(y_true, y_prob)
    if metric not in THRESHOLD_METRICS:
        raise UsageError(
            f"metric must be one of {', '.join(THRESHOLD_METRICS)}, got {metric!r}",
            details={"argument": "metric", "value": repr(metric)},
        )
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or (metric == "youden" and n_neg == 0):
        missing = "positives" if n_pos == 0 else "negatives"
        raise UsageError(
            f"y_true has no {missing}; a threshold cannot be chosen from one class",
            details={"argument": "y_true"},
        )
    tps, fps, thresholds = binary_curve(y, p)
    precision = tps / (tps + fps)
    recall = tps / n_pos
    secondary = precision
    if metric == "f1":
        value = 2 * tps / (tps + fps + n_pos)
    elif metric == "precision":
        value, secondary = precision, recall
    elif metric == "recall":
        value = recall
    else:
        value = recall - fps / n_neg
    keep = np.ones(len(thresholds), dtype=bool)
    if min_precision is not None:
        floor = check_float("min_precision", min_precision, low=0.0, high=1.0)
        keep = precision >= floor
        if not keep.any():
            best = float(precision.max())
            raise UsageError(
                f"no threshold reaches precision {floor} (the best is {best:.4g}); "
                "lower min_precision",
                details={"argument": "min_precision", "value": floor, "best_precision": best},
            )
    idx = np.flatnonzero(keep)
    pick = idx[np.lexsort((thresholds[idx], secondary[idx], value[idx]))[-1]]
    return float(thresholds[pick]), float(value[pick])
