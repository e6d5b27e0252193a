"""Calibration: does a predicted probability of 0.8 come true 80 % of the time?"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from loopml.errors import UsageError
from loopml.evaluation._args import (
    BoolArray,
    FloatArray,
    IntArray,
    as_binary,
    as_float,
    check_int,
    check_length,
)


def check_probabilities(p: FloatArray, name: str) -> None:
    bad = (p < 0.0) | (p > 1.0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UsageError(
            f"{name}[{row}] = {p[row]} is not a probability; {name} must be in [0, 1] "
            "(pass predicted probabilities, not raw scores)",
            details={"argument": name, "row": row, "value": float(p[row])},
        )


def binary_inputs(y_true: Any, y_prob: Any, name: str = "y_prob") -> tuple[BoolArray, FloatArray]:
    """Checked binary labels and probabilities of the same, non-zero length."""
    y = as_binary(y_true, "y_true")
    p = as_float(y_prob, name)
    check_length(name, p, len(y))
    if len(y) == 0:
        raise UsageError("y_true is empty; evaluation needs rows", details={"argument": "y_true"})
    check_probabilities(p, name)
    return y, p


def bin_stats(
    y: BoolArray, p: FloatArray, edges: FloatArray
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Count, sum of probabilities and sum of positives per bin.

    Bins are closed on the right, ``(lower, upper]``, the first one closed on both sides, exactly
    as scikit-learn's ``calibration_curve`` cuts them.
    """
    n_bins = len(edges) - 1
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=n_bins).astype(np.int64)
    sum_p = np.asarray(np.bincount(ids, weights=p, minlength=n_bins), dtype=np.float64)
    sum_y = np.asarray(np.bincount(ids, weights=y, minlength=n_bins), dtype=np.float64)
    return count, sum_p, sum_y


def ece(y: BoolArray, p: FloatArray, bins: int) -> float:
    """Expected calibration error over ``bins`` equal-width bins, on checked inputs."""
    _, sum_p, sum_y = bin_stats(y, p, np.linspace(0.0, 1.0, bins + 1))
    # sum over bins of (count / n) * |mean_p - frac_y| == sum |sum_p - sum_y| / n
    return float(np.abs(sum_p - sum_y).sum() / len(y))


def expected_calibration_error(y_true: Any, y_prob: Any, bins: int = 15) -> float:
    """Expected calibration error: the mean gap between predicted probability and observed
    frequency over ``bins`` equal-width bins of [0, 1], each weighted by its share of rows.

    0 is perfect calibration; the worst possible is 1.

    >>> round(expected_calibration_error([0, 1, 1, 0], [0.1, 0.9, 0.9, 0.1]), 6)
    0.1
    """
    y, p = binary_inputs(y_true, y_prob)
    return ece(y, p, check_int("bins", bins, minimum=1))


def calibration_curve(
    y_true: Any,
    y_prob: Any,
    *,
    bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "quantile",
) -> list[dict[str, Any]]:
    """The reliability diagram of binary probabilities, one record per non-empty bin:
    ``lower``, ``upper``, ``mean_predicted``, ``fraction_positive`` and ``count``.

    ``strategy="uniform"`` cuts [0, 1] into ``bins`` equal widths; ``"quantile"`` puts the edges at
    quantiles of ``y_prob`` so that bins hold about the same number of rows (tied probabilities
    can leave some bins empty, and empty bins are left out). A bin holds ``lower < p <= upper``
    (the first one also ``p == lower``), as in scikit-learn's ``calibration_curve``, whose
    ``prob_pred`` and ``prob_true`` are the ``mean_predicted`` and ``fraction_positive`` here.

    >>> [b["fraction_positive"] for b in calibration_curve([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.8], bins=2)]
    [0.0, 1.0]
    """
    y, p = binary_inputs(y_true, y_prob)
    n_bins = check_int("bins", bins, minimum=1)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))
    else:
        raise UsageError(
            f"strategy must be 'uniform' or 'quantile', got {strategy!r}",
            details={"argument": "strategy", "value": repr(strategy)},
        )
    count, sum_p, sum_y = bin_stats(y, p, edges)
    return [
        {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "mean_predicted": float(sum_p[i] / count[i]),
            "fraction_positive": float(sum_y[i] / count[i]),
            "count": int(count[i]),
        }
        for i in np.flatnonzero(count)
    ]
