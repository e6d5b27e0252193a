"""Metrics: every number is checked against scikit-learn on random data, with ties."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

import loopml.evaluation
from loopml.errors import UsageError
from loopml.evaluation import higher_is_better, metrics

MODULES = [
    "",
    "._args",
    "._baselines",
    "._behaviour",
    "._calibration",
    "._importance",
    "._metrics",
    "._slices",
    "._threshold",
]


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module("loopml.evaluation" + module))
    assert result.failed == 0


def test_public_names() -> None:
    assert sorted(loopml.evaluation.__all__) == loopml.evaluation.__all__
    for name in loopml.evaluation.__all__:
        assert callable(getattr(loopml.evaluation, name)), name


def manual_ece(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for i in range(bins):
        lo, hi = edges[i], edges[i + 1]
        inside = (p > lo) & (p <= hi) if i else (p >= lo) & (p <= hi)
        if inside.any():
            total += inside.sum() / len(p) * abs(p[inside].mean() - y[inside].mean())
    return total


def check_binary(y: np.ndarray, p: np.ndarray, threshold: float) -> None:
    m = metrics("binary", y, p, threshold=threshold)
    pred = (p >= threshold).astype(int)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-12)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["ece"] == pytest.approx(manual_ece(y, p), abs=1e-12)
    assert m["positive_rate"] == pytest.approx(y.mean())
    assert m["predicted_positive_rate"] == pytest.approx(pred.mean())
    assert m["n"] == len(y)


@pytest.mark.parametrize("seed", range(5))
def test_binary_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 2000))
    p = rng.random(n)
    if seed % 2:
        p = np.round(p, 1)  # many ties
    y = (rng.random(n) < p).astype(int)
    check_binary(y, p, threshold=float(rng.choice([0.3, 0.5, 0.7])))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5001, 0.9, 1.0])),
        min_size=2,
        max_size=40,
    ).filter(lambda rows: len({r[0] for r in rows}) == 2)
)
def test_binary_matches_sklearn_property(rows: list[tuple[bool, float]]) -> None:
    y = np.array([r[0] for r in rows], dtype=int)
    p = np.array([r[1] for r in rows])
    check_binary(y, p, threshold=0.5)


def test_binary_accepts_bool_arrow_and_lists() -> None:
    y = [True, False, True, False]
    p = [0.9, 0.2, 0.6, 0.7]
    a = metrics("binary", y, p)
    b = metrics("binary", pa.array(y), pa.chunked_array([pa.array(p)]))
    c = metrics("binary", np.array([1, 0, 1, 0]), np.array(p))
    assert a == b == c
    assert a["roc_auc"] == 0.75


def test_binary_one_class_gives_nan_aucs() -> None:
    for y in ([0, 0, 0], [1, 1, 1]):
        m = metrics("binary", y, [0.2, 0.6, 0.9])
        assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
        assert math.isfinite(m["log_loss"]) and math.isfinite(m["brier"])
    m = metrics("binary", [0, 0], [0.1, 0.2])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_binary_extreme_probabilities_are_clipped() -> None:
    m = metrics("binary", [1, 0], [0.0, 1.0])
    assert m["log_loss"] == pytest.approx(skm.log_loss([1, 0], [0.0, 1.0]))


@pytest.mark.parametrize(
    ("y_pred", "row"),
    [
        ([0.1, float("nan"), 0.3], 1),
        ([0.1, None, 0.3], 1),
        (pa.array([0.1, 0.2, None]), 2),
        ([0.1, float("inf"), 0.3], 1),
    ],
)
def test_nulls_and_nan_in_y_pred_name_the_argument(y_pred: object, row: int) -> None:
    for task in ("binary", "regression"):
        with pytest.raises(UsageError, match="y_pred") as info:
            metrics(task, [0, 1, 0], y_pred)
        assert info.value.details["argument"] == "y_pred"
        assert info.value.details["row"] == row


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"task": "clustering", "y_true": [0, 1], "y_pred": [0.1, 0.2]}, "task"),
        ({"task": "binary", "y_true": [0, 2], "y_pred": [0.1, 0.2]}, "y_true"),
        ({"task": "binary", "y_true": [0, None], "y_pred": [0.1, 0.2]}, "y_true"),
        ({"task": "binary", "y_true": [0, 1], "y_pred": [0.1, 1.2]}, "y_pred"),
        ({"task": "binary", "y_true": [0, 1], "y_pred": [0.1]}, "y_pred"),
        ({"task": "binary", "y_true": [], "y_pred": []}, "y_true"),
        ({"task": "binary", "y_true": [0, 1], "y_pred": [0.1, 0.2], "threshold": "x"}, "threshold"),
        ({"task": "multiclass", "y_true": [0, 1], "y_pred": [0.3, 0.7]}, "y_pred"),
        ({"task": "multiclass", "y_true": [0, 1], "y_pred": [[0.3, 0.6], [0.5, 0.5]]}, "y_pred"),
        (
            {
                "task": "multiclass",
                "y_true": [0, 1],
                "y_pred": [[0.3, 0.7], [0.5, 0.5]],
                "classes": [0],
            },
            "classes",
        ),
        (
            {
                "task": "multiclass",
                "y_true": [0, 5],
                "y_pred": [[0.3, 0.7], [0.5, 0.5]],
                "classes": [0, 1],
            },
            "y_true",
        ),
        ({"task": "multiclass", "y_true": [0, 1, 2], "y_pred": np.full((3, 2), 0.5)}, "classes"),
        ({"task": "ranking", "y_true": [0, 1], "y_pred": [0.1, 0.2]}, "groups"),
        ({"task": "ranking", "y_true": [0, -1], "y_pred": [0.1, 0.2], "groups": [1, 1]}, "y_true"),
        (
            {"task": "ranking", "y_true": [0, 1], "y_pred": [0.1, 0.2], "groups": [1, None]},
            "groups",
        ),
        (
            {"task": "ranking", "y_true": [0, 1], "y_pred": [0.1, 0.2], "groups": [1, 1], "k": 0},
            "k",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, argument: str) -> None:
    with pytest.raises(UsageError) as info:
        metrics(**kwargs)
    assert info.value.details["argument"] == argument


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ["ant", "bee", "cat", "dog", "eel"][: 2 + seed]
    n = 500
    proba = rng.dirichlet(np.ones(len(classes)), size=n)
    y = np.array(classes)[[rng.choice(len(classes), p=row) for row in proba]]
    m = metrics("multiclass", y, proba, classes=classes)
    pred = np.array(classes)[proba.argmax(axis=1)]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    k = min(3, len(classes))
    if len(classes) > 3:
        expected_top_k = skm.top_k_accuracy_score(y, proba, k=k, labels=classes)
    else:
        expected_top_k = 1.0
    assert m["top_k_accuracy"] == pytest.approx(expected_top_k)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=classes))
    assert m["n"] == n


def test_multiclass_infers_sorted_classes_and_ignores_absent_ones_in_macro_f1() -> None:
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    m = metrics("multiclass", [0, 1, 1], proba, classes=[0, 1, 2])
    assert m["macro_f1"] == pytest.approx(skm.f1_score([0, 1, 1], [0, 1, 0], average="macro"))
    assert metrics("multiclass", [0, 1, 2], proba)["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(4))
def test_regression_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(5, 3, 300)
    y[rng.random(300) < 0.1] = 0.0
    p = y + rng.normal(0, 1, 300)
    m = metrics("regression", y, p)
    nz = y != 0
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p))
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y[nz], p[nz]))
    assert m["mape_ignored"] == (~nz).sum()
    assert m["r2"] == pytest.approx(skm.r2_score(y, p))


def test_regression_degenerate() -> None:
    m = metrics("regression", [0.0, 0.0], [1.0, 2.0])
    assert math.isnan(m["mape"]) and m["mape_ignored"] == 2
    assert math.isnan(m["r2"])  # constant y_true: r2 is undefined
    assert m["mae"] == 1.5


def ranking_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 30, 40)
    groups = np.repeat(np.arange(len(sizes)) * 7 + 3, sizes)
    rel = rng.integers(0, 4, len(groups)) * (rng.random(len(groups)) < 0.5)
    scores = np.round(rel + rng.normal(0, 1.5, len(groups)), 1)  # ties within queries
    perm = rng.permutation(len(groups))  # queries are not contiguous
    return rel[perm].astype(float), scores[perm], groups[perm]


@pytest.mark.parametrize(("seed", "k"), [(0, 10), (1, 3), (2, 1), (3, 100)])
def test_ranking_matches_sklearn(seed: int, k: int) -> None:
    rel, scores, groups = ranking_data(seed)
    m = metrics("ranking", rel, scores, groups=groups, k=k)
    ndcgs, aps = [], []
    for g in np.unique(groups):
        rows = groups == g
        if not (rel[rows] > 0).any():
            continue
        gains = 2.0 ** rel[rows] - 1
        ndcgs.append(skm.ndcg_score([gains], [scores[rows]], k=k))
        aps.append(skm.average_precision_score(rel[rows] > 0, scores[rows]))
    assert m[f"ndcg@{k}"] == pytest.approx(np.mean(ndcgs), abs=1e-12)
    assert m["map"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert m["n_queries"] == len(np.unique(groups))
    assert m["queries_without_relevant"] == len(np.unique(groups)) - len(ndcgs)
    assert m["n"] == len(rel)


def test_ranking_string_groups_and_degenerate_queries() -> None:
    m = metrics("ranking", [1, 0, 0, 0], [0.5, 0.2, 0.9, 0.1], groups=["a", "a", "b", "b"], k=5)
    assert m["ndcg@5"] == 1.0 and m["map"] == 1.0
    assert m["n_queries"] == 2 and m["queries_without_relevant"] == 1
    m = metrics("ranking", [0, 0], [0.5, 0.2], groups=["a", "a"])
    assert math.isnan(m["ndcg@10"]) and math.isnan(m["map"])


def test_higher_is_better() -> None:
    assert higher_is_better("pr_auc") and higher_is_better("ndcg@3") and higher_is_better("r2")
    assert not higher_is_better("log_loss") and not higher_is_better("mape")
    with pytest.raises(UsageError):
        higher_is_better("n")
