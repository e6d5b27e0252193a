"""The metrics of each task, vectorized with numpy and equal to scikit-learn's where both exist."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from loopml.errors import UsageError
from loopml.evaluation._args import (
    BoolArray,
    FloatArray,
    IntArray,
    as_codes,
    as_float,
    as_labels,
    check_float,
    check_int,
    check_length,
    check_task,
    encode,
)
from loopml.evaluation._calibration import binary_inputs, check_probabilities, ece

ECE_BINS = 15
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece", "mae", "rmse", "mape"})
HIGHER_IS_BETTER = frozenset(
    {"roc_auc", "pr_auc", "precision", "recall", "f1", "accuracy", "macro_f1", "top_k_accuracy"}
    | {"r2", "map"}
)
# Rows summing to 1 within this pass as probabilities (float32 softmax is well inside it).
ROW_SUM_TOLERANCE = 1e-3


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (a key of :func:`metrics`) is better.

    Counts and rates that describe the data rather than the model (``n``, ``positive_rate``, ...)
    have no better direction and are refused.

    >>> higher_is_better("roc_auc"), higher_is_better("rmse"), higher_is_better("ndcg@5")
    (True, False, True)
    """
    if metric in HIGHER_IS_BETTER or metric.startswith("ndcg@"):
        return True
    if metric in LOWER_IS_BETTER:
        return False
    raise UsageError(
        f"metric {metric!r} is not a quality metric; use one of "
        f"{sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER | {'ndcg@<k>'})}",
        details={"argument": "metric", "value": metric},
    )


def metrics(
    task: str,
    y_true: Any,
    y_pred: Any,
    *,
    threshold: float = 0.5,
    classes: Sequence[Any] | None = None,
    groups: Any = None,
    k: int = 10,
) -> dict[str, float]:
    """The standard metrics of ``task`` for predictions ``y_pred`` against ``y_true``.

    * ``"binary"``: ``y_true`` 0/1 or bool, ``y_pred`` the probability of class 1. ``roc_auc``,
      ``pr_auc`` (average precision), ``log_loss``, ``brier``, ``precision``, ``recall``, ``f1`` and
      ``accuracy`` with ``y_pred >= threshold`` predicted positive, ``ece`` (15 equal-width bins),
      ``positive_rate`` (of ``y_true``), ``predicted_positive_rate`` and ``n``. With one class only
      both AUCs are NaN. Precision, recall and F1 with a zero denominator are 0 (scikit-learn's
      ``zero_division`` default).
    * ``"multiclass"``: ``y_pred`` an (n, n_classes) probability matrix with columns in the order of
      ``classes`` (default: the sorted distinct labels of ``y_true``). ``accuracy`` (of the arg-max),
      ``macro_f1`` (over the classes present in ``y_true`` or predicted, as scikit-learn),
      ``top_k_accuracy`` with k = min(3, n_classes) (tied scores count as hits), ``log_loss``, ``n``.
    * ``"regression"``: ``mae``, ``rmse``, ``mape`` (a fraction, not a percentage, over rows with
      ``y_true != 0``; ``mape_ignored`` counts the others, and ``mape`` is NaN when all are
      ignored), ``r2`` (NaN when ``y_true`` is constant), ``n``.
    * ``"ranking"``: ``y_true`` non-negative relevance grades, ``y_pred`` scores, ``groups`` the
      query of each row (in any order). ``ndcg@k`` with gains 2^rel - 1, a log2 discount and tied
      scores averaged (scikit-learn's ``ndcg_score`` on the gains), and ``map`` (average precision
      with rel > 0 relevant, tied scores as one block as in ``average_precision_score``), both
      averaged over the queries with at least one relevant row (NaN if there is none);
      ``n_queries`` counts all queries, ``queries_without_relevant`` those left out, ``n`` rows.

    Log losses clip probabilities to [eps, 1 - eps] (float64 eps) like scikit-learn. Null, NaN or
    infinite ``y_pred`` and empty inputs are a :class:`~loopml.errors.UsageError`.

    >>> m = metrics("binary", [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8])
    >>> m["roc_auc"], m["f1"], m["n"]
    (0.75, 0.5, 4.0)
    """
    task = check_task(task)
    if task == "binary":
        y, p = binary_inputs(y_true, y_pred, "y_pred")
        return binary_metrics(y, p, check_float("threshold", threshold))
    if task == "multiclass":
        labels = as_labels(y_true, "y_true")
        if len(labels) == 0:
            raise UsageError(
                "y_true is empty; evaluation needs rows", details={"argument": "y_true"}
            )
        proba = as_float(y_pred, "y_pred", ndim=2)
        check_length("y_pred", proba, len(labels))
        classes_arr = _classes(labels, classes, proba.shape[1])
        return multiclass_metrics(encode(labels, classes_arr, "y_true"), proba)
    y_num = as_float(y_true, "y_true")
    if len(y_num) == 0:
        raise UsageError("y_true is empty; evaluation needs rows", details={"argument": "y_true"})
    scores = as_float(y_pred, "y_pred")
    check_length("y_pred", scores, len(y_num))
    if task == "regression":
        return regression_metrics(y_num, scores)
    if groups is None:
        raise UsageError(
            "task 'ranking' needs groups: the query id of every row",
            details={"argument": "groups"},
        )
    group_labels = as_labels(groups, "groups")
    check_length("groups", group_labels, len(y_num))
    if (y_num < 0).any():
        raise UsageError(
            "y_true holds negative relevance grades; ranking needs grades >= 0",
            details={"argument": "y_true"},
        )
    codes, _ = as_codes(group_labels, "groups")
    return ranking_metrics(y_num, scores, codes, check_int("k", k, minimum=1))


def _classes(labels: np.ndarray, classes: Sequence[Any] | None, n_columns: int) -> np.ndarray:
    if classes is None:
        _, arr = as_codes(labels, "y_true")
        if len(arr) != n_columns:
            raise UsageError(
                f"y_pred has {n_columns} columns but y_true has {len(arr)} distinct labels; pass "
                "classes, the labels of y_pred's columns in order",
                details={"argument": "classes"},
            )
        return arr
    arr = np.asarray(list(classes))
    if arr.ndim != 1 or len(arr) != n_columns:
        raise UsageError(
            f"classes has {len(arr)} labels but y_pred has {n_columns} columns; give one label per "
            "column of y_pred, in order",
            details={"argument": "classes"},
        )
    return arr


def binary_curve(y: BoolArray, p: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """True and false positive counts at each distinct threshold, highest first (``p >= t``)."""
    order = np.argsort(-p, kind="mergesort")
    p_sorted = p[order]
    ends = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p) - 1]
    tps = np.cumsum(y[order], dtype=np.float64)[ends]
    fps = (ends + 1) - tps
    return tps, fps, p_sorted[ends]


def _aucs(y: BoolArray, p: FloatArray) -> tuple[float, float]:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return math.nan, math.nan
    tps, fps, _ = binary_curve(y, p)
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / (len(y) - n_pos)]
    roc_auc = float(np.trapezoid(tpr, fpr))
    precision = tps / (tps + fps)
    pr_auc = float((np.diff(tpr) * precision).sum())
    return roc_auc, pr_auc


def _log_loss_binary(y: BoolArray, p: FloatArray) -> float:
    eps = np.finfo(np.float64).eps
    q = np.clip(np.where(y, p, 1.0 - p), eps, 1.0 - eps)
    return float(-np.log(q).mean())


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def binary_metrics(y: BoolArray, p: FloatArray, threshold: float) -> dict[str, float]:
    n = len(y)
    pred = p >= threshold
    tp = float(np.count_nonzero(pred & y))
    fp = float(np.count_nonzero(pred & ~y))
    fn = float(np.count_nonzero(~pred & y))
    roc_auc, pr_auc = _aucs(y, p)
    return {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "log_loss": _log_loss_binary(y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": float(np.count_nonzero(pred == y) / n),
        "ece": ece(y, p, ECE_BINS),
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(pred.mean()),
        "n": float(n),
    }


def multiclass_metrics(codes: IntArray, proba: FloatArray) -> dict[str, float]:
    check_probabilities(proba.reshape(-1), "y_pred")
    sums = proba.sum(axis=1)
    off = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise UsageError(
            f"y_pred row {row} sums to {sums[row]:.6g}, not 1; pass class probabilities",
            details={"argument": "y_pred", "row": row},
        )
    n, n_classes = proba.shape
    rows = np.arange(n)
    true_p = proba[rows, codes]
    pred = proba.argmax(axis=1)
    tp = np.bincount(codes[pred == codes], minlength=n_classes).astype(np.float64)
    true_count = np.bincount(codes, minlength=n_classes)
    pred_count = np.bincount(pred, minlength=n_classes)
    present = (true_count + pred_count) > 0
    den = (true_count + pred_count)[present]
    f1 = 2 * tp[present] / den
    top_k = min(3, n_classes)
    above = (proba > true_p[:, None]).sum(axis=1)
    eps = np.finfo(np.float64).eps
    return {
        "accuracy": float(np.mean(pred == codes)),
        "macro_f1": float(f1.mean()),
        "top_k_accuracy": float(np.mean(above < top_k)),
        "log_loss": float(-np.log(np.clip(true_p, eps, 1.0 - eps)).mean()),
        "n": float(n),
    }


def regression_metrics(y: FloatArray, p: FloatArray) -> dict[str, float]:
    err = p - y
    nonzero = y != 0
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "mape": float(np.mean(np.abs(err[nonzero]) / np.abs(y[nonzero])))
        if nonzero.any()
        else math.nan,
        "mape_ignored": float(np.count_nonzero(~nonzero)),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else math.nan,
        "n": float(len(y)),
    }


def _starts(sorted_codes: IntArray, n_groups: int) -> IntArray:
    """Index of the first row of each group in rows sorted by group code."""
    return np.searchsorted(sorted_codes, np.arange(n_groups)).astype(np.int64)


def ranking_metrics(
    rel: FloatArray, scores: FloatArray, codes: IntArray, k: int
) -> dict[str, float]:
    n_groups = int(codes.max()) + 1
    gains = np.exp2(rel) - 1.0

    # Rows by query, best score first; blocks of tied scores within a query.
    order = np.lexsort((-scores, codes))
    q = codes[order]
    s = scores[order]
    g = gains[order]
    relevant = (rel[order] > 0).astype(np.float64)
    pos = np.arange(len(q)) - _starts(q, n_groups)[q]
    new_block = np.r_[True, (np.diff(q) != 0) | (np.diff(s) != 0)]
    block = np.cumsum(new_block) - 1
    block_q = q[new_block]

    # DCG with ties averaged: each block contributes its mean gain times its summed discounts.
    discount = np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0)
    block_size = np.bincount(block).astype(np.float64)
    block_gain = np.bincount(block, weights=g) / block_size
    block_discount = np.bincount(block, weights=discount)
    dcg = np.bincount(block_q, weights=block_gain * block_discount, minlength=n_groups)

    # Ideal DCG: gains in decreasing order within each query. Both orders sort by query first, so
    # the position of each sorted row in its query, and hence its discount, is the same.
    ideal_order = np.lexsort((-gains, codes))
    ideal = gains[ideal_order]
    idcg = np.bincount(codes[ideal_order], weights=ideal * discount, minlength=n_groups)

    # Average precision with tied blocks as one step: at the end of each block holding relevant
    # rows, precision there times the share of the query's relevant rows in the block.
    n_relevant = np.bincount(q, weights=relevant, minlength=n_groups)
    cum_relevant = np.cumsum(relevant)
    cum_relevant -= np.r_[0.0, np.cumsum(n_relevant)][:-1][q]
    block_end = np.r_[np.flatnonzero(new_block)[1:] - 1, len(q) - 1]
    block_relevant = np.bincount(block, weights=relevant)
    precision_at_end = cum_relevant[block_end] / (pos[block_end] + 1.0)
    ap_sum = np.bincount(block_q, weights=block_relevant * precision_at_end, minlength=n_groups)

    scored = n_relevant > 0
    n_scored = int(scored.sum())
    ndcg = float((dcg[scored] / idcg[scored]).mean()) if n_scored else math.nan
    mean_ap = float((ap_sum[scored] / n_relevant[scored]).mean()) if n_scored else math.nan
    return {
        f"ndcg@{k}": ndcg,
        "map": mean_ap,
        "n_queries": float(n_groups),
        "queries_without_relevant": float(n_groups - n_scored),
        "n": float(len(rel)),
    }
