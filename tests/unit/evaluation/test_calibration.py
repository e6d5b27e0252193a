"""Calibration curves, expected calibration error and decision thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve as sk_calibration_curve
from sklearn.metrics import f1_score, precision_score, recall_score

from loopml.errors import UsageError
from loopml.evaluation import (
    best_threshold,
    calibration_curve,
    expected_calibration_error,
    metrics,
)


def synthetic(n: int, seed: int, distort: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn with probability p**distort: calibrated at distort=1."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = (rng.random(n) < p**distort).astype(int)
    return y, p


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("bins", [1, 5, 10, 23])
def test_calibration_curve_matches_sklearn(strategy: str, bins: int) -> None:
    y, p = synthetic(3000, bins)
    p = np.round(p, 2)  # ties land on edges
    curve = calibration_curve(y, p, bins=bins, strategy=strategy)
    prob_true, prob_pred = sk_calibration_curve(y, p, n_bins=bins, strategy=strategy)
    np.testing.assert_allclose([b["fraction_positive"] for b in curve], prob_true, atol=1e-12)
    np.testing.assert_allclose([b["mean_predicted"] for b in curve], prob_pred, atol=1e-12)
    assert sum(b["count"] for b in curve) == len(y)
    for b in curve:
        assert b["lower"] <= b["mean_predicted"] <= b["upper"]


def test_quantile_bins_hold_similar_counts_and_empty_bins_are_dropped() -> None:
    y, p = synthetic(1000, 1)
    counts = [b["count"] for b in calibration_curve(y, p, bins=10)]
    assert len(counts) == 10 and max(counts) - min(counts) <= 2
    curve = calibration_curve([0, 1, 1], [0.2, 0.2, 0.2], bins=4)
    assert curve == [
        {
            "lower": 0.2,
            "upper": 0.2,
            "mean_predicted": pytest.approx(0.2),
            "fraction_positive": pytest.approx(2 / 3),
            "count": 3,
        }
    ]
    uniform = calibration_curve([0, 1], [0.05, 0.95], bins=10, strategy="uniform")
    assert [(b["lower"], b["count"]) for b in uniform] == [(0.0, 1), (pytest.approx(0.9), 1)]


def test_ece_small_when_calibrated_and_large_when_not() -> None:
    y, p = synthetic(20000, 0)
    assert expected_calibration_error(y, p) < 0.02
    y_bad, p_bad = synthetic(20000, 0, distort=4.0)  # true rate p**4: overconfident
    assert expected_calibration_error(y_bad, p_bad) > 0.15
    # Always predicting 0.9 for a 10 % positive rate is off by 0.8.
    y_const = (np.arange(1000) % 10 == 0).astype(int)
    assert expected_calibration_error(y_const, np.full(1000, 0.9)) == pytest.approx(0.8)
    assert metrics("binary", y, p)["ece"] == pytest.approx(expected_calibration_error(y, p))


def test_calibration_bad_arguments() -> None:
    with pytest.raises(UsageError, match="strategy"):
        calibration_curve([0, 1], [0.1, 0.2], strategy="kmeans")
    with pytest.raises(UsageError) as info:
        calibration_curve([0, 1], [0.1, 0.2], bins=0)
    assert info.value.details["argument"] == "bins"
    with pytest.raises(UsageError) as info:
        expected_calibration_error([0, 1], [0.1, 2.0])
    assert info.value.details["argument"] == "y_prob"


def brute_force(y: np.ndarray, p: np.ndarray, metric: str, min_precision: float | None) -> float:
    best = -np.inf
    for t in np.unique(p):
        pred = (p >= t).astype(int)
        precision = precision_score(y, pred, zero_division=0)
        if min_precision is not None and precision < min_precision:
            continue
        if metric == "f1":
            value = f1_score(y, pred)
        elif metric == "precision":
            value = precision
        elif metric == "recall":
            value = recall_score(y, pred)
        else:
            tpr = pred[y == 1].mean()
            fpr = pred[y == 0].mean()
            value = tpr - fpr
        best = max(best, value)
    return best


@pytest.mark.parametrize(
    ("metric", "min_precision"),
    [("f1", None), ("precision", None), ("recall", None), ("youden", None), ("recall", 0.8)],
)
@pytest.mark.parametrize("seed", range(3))
def test_best_threshold_matches_brute_force(
    metric: str, min_precision: float | None, seed: int
) -> None:
    y, p = synthetic(300, seed)
    p = np.round(p, 2)
    t, value = best_threshold(y, p, metric=metric, min_precision=min_precision)
    assert value == pytest.approx(brute_force(y, p, metric, min_precision))
    assert t in set(p.tolist())
    m = metrics("binary", y, p, threshold=t)
    if metric in ("f1", "precision", "recall"):
        assert m[metric] == pytest.approx(value)
    if min_precision is not None:
        assert m["precision"] >= min_precision


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 10)), min_size=1, max_size=30).filter(
        lambda rows: any(r[0] for r in rows)
    )
)
def test_best_f1_threshold_property(rows: list[tuple[bool, int]]) -> None:
    y = np.array([r[0] for r in rows], dtype=int)
    p = np.array([r[1] / 10 for r in rows])
    _, value = best_threshold(y, p)
    assert value == pytest.approx(brute_force(y, p, "f1", None))


def test_best_threshold_ties_and_refusals() -> None:
    # Precision 1 at 0.9 and at 0.8: the tie goes to the one with more recall.
    assert best_threshold([1, 1, 0], [0.9, 0.8, 0.1], metric="precision") == (0.8, 1.0)
    with pytest.raises(UsageError) as info:
        best_threshold([0, 0], [0.1, 0.2])
    assert info.value.details["argument"] == "y_true"
    with pytest.raises(UsageError) as info:
        best_threshold([1, 1], [0.1, 0.2], metric="youden")
    assert info.value.details["argument"] == "y_true"
    with pytest.raises(UsageError) as info:
        best_threshold([0, 1, 0], [0.9, 0.5, 0.1], metric="recall", min_precision=0.9)
    assert info.value.details["argument"] == "min_precision"
    assert info.value.details["best_precision"] == 0.5
    with pytest.raises(UsageError) as info:
        best_threshold([0, 1], [0.1, 0.2], metric="auc")
    assert info.value.details["argument"] == "metric"
