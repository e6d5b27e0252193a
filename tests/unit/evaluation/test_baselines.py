"""Baselines: the heuristic must find the informative column among noise and beat the constant."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from loopml.errors import UsageError
from loopml.evaluation import baselines, metrics


def tables(n: int, seed: int, task: str) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    informative = rng.choice(["p", "q", "r", "s", "t"], n)
    effect = {"p": -2.0, "q": -1.0, "r": 0.0, "s": 1.0, "t": 2.0}
    signal = np.vectorize(effect.get)(informative).astype(float)
    table = pa.table(
        {
            "informative": informative,
            "noise": rng.choice([f"v{i}" for i in range(150)], n),
            "noise_num": rng.normal(size=n),
            "id": np.array([f"row{i}" for i in range(n)]),  # > 200 values: never a lookup table
            "flag": rng.random(n) < 0.5,
        }
    )
    if task == "binary":
        y = (rng.random(n) < 1 / (1 + np.exp(-signal))).astype(int)
    elif task == "multiclass":
        y = np.where(
            signal + rng.normal(0, 0.7, n) > 0.5, "high", np.where(signal < -0.5, "low", "mid")
        )
    else:
        y = 10 + 3 * signal + rng.normal(0, 1, n)
    return table, y


CANDIDATES = ["noise", "flag", "noise_num", "id", "informative"]


def test_binary_heuristic_picks_informative_column_and_beats_prior() -> None:
    train, y_train = tables(3000, 0, "binary")
    test, y_test = tables(2000, 1, "binary")
    out = baselines("binary", y_train, y_test, train=train, test=test, candidates=CANDIDATES)
    assert set(out) == {"prior", "heuristic"}
    assert out["heuristic"]["column"] == "informative"
    assert "'informative'" in out["heuristic"]["description"]
    prior, heuristic = out["prior"]["metrics"], out["heuristic"]["metrics"]
    assert heuristic["log_loss"] < prior["log_loss"] - 0.05
    assert heuristic["roc_auc"] > 0.7 and prior["roc_auc"] == 0.5
    rate = y_train.mean()
    assert prior == metrics("binary", y_test, np.full(len(y_test), rate))


def test_many_valued_noise_does_not_win_by_memorizing() -> None:
    rng = np.random.default_rng(5)
    n = 600
    weak = rng.choice(["a", "b"], n)
    y = (rng.random(n) < np.where(weak == "a", 0.4, 0.6)).astype(int)
    train = pa.table({"weak": weak, "noise": rng.choice([f"v{i}" for i in range(200)], n)})
    out = baselines("binary", y, y, train=train, test=train, candidates=["noise", "weak"])
    assert out["heuristic"]["column"] == "weak"


def test_numeric_candidates_are_bucketed() -> None:
    rng = np.random.default_rng(6)
    n = 3000
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-3 * x))).astype(int)
    x_with_nulls = pa.array(x, mask=rng.random(n) < 0.05)
    table = pa.table({"x": x_with_nulls, "noise": rng.choice(["a", "b", "c"], n)})
    out = baselines("binary", y, y, train=table, test=table, candidates=["noise", "x"])
    assert out["heuristic"]["column"] == "x"
    assert out["heuristic"]["metrics"]["roc_auc"] > 0.85


def test_unseen_values_get_the_prior() -> None:
    train = pa.table({"city": ["a", "a", "b", "b"]})
    test = pa.table({"city": ["c", "c", None]})
    out = baselines("binary", [1, 1, 0, 1], [1, 0, 1], train=train, test=test, candidates=["city"])
    assert out["heuristic"]["metrics"]["log_loss"] == pytest.approx(
        out["prior"]["metrics"]["log_loss"]
    )


def test_multiclass_baselines() -> None:
    train, y_train = tables(3000, 2, "multiclass")
    test, y_test = tables(2000, 3, "multiclass")
    out = baselines("multiclass", y_train, y_test, train=train, test=test, candidates=CANDIDATES)
    assert set(out) == {"majority", "heuristic"}
    majority = out["majority"]["metrics"]
    train_values, train_counts = np.unique(y_train, return_counts=True)
    majority_class = train_values[np.argmax(train_counts)]
    assert majority["accuracy"] == pytest.approx(np.mean(y_test == majority_class))
    assert out["heuristic"]["column"] == "informative"
    assert out["heuristic"]["metrics"]["log_loss"] < majority["log_loss"] - 0.2
    assert out["heuristic"]["metrics"]["macro_f1"] > majority["macro_f1"]


def test_multiclass_with_explicit_classes_and_missing_class() -> None:
    out = baselines("multiclass", [0, 0, 1], [0, 1, 2], classes=[0, 1, 2])
    assert out["majority"]["metrics"]["accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(UsageError) as info:
        baselines("multiclass", [0, 0, 1], [0, 7], classes=[0, 1, 2])
    assert info.value.details["argument"] == "y_test"


def test_regression_baselines() -> None:
    train, y_train = tables(3000, 4, "regression")
    test, y_test = tables(2000, 5, "regression")
    out = baselines("regression", y_train, y_test, train=train, test=test, candidates=CANDIDATES)
    assert set(out) == {"mean", "median", "heuristic"}
    assert out["mean"]["metrics"]["rmse"] == pytest.approx(
        metrics("regression", y_test, np.full(len(y_test), y_train.mean()))["rmse"]
    )
    assert out["median"]["metrics"]["mae"] == pytest.approx(
        metrics("regression", y_test, np.full(len(y_test), np.median(y_train)))["mae"]
    )
    assert out["heuristic"]["column"] == "informative"
    assert out["heuristic"]["metrics"]["rmse"] < 0.5 * out["mean"]["metrics"]["rmse"]


def ranking_tables(seed: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(200), 15)
    n = len(groups)
    distance = rng.exponential(5, n)
    rel = np.clip(np.round(3 - distance / 3 + rng.normal(0, 0.5, n)), 0, 3)
    table = pa.table(
        {
            "distance": pa.array(distance, mask=rng.random(n) < 0.02),
            "noise": rng.normal(size=n),
            "city": rng.choice(["a", "b"], n),
        }
    )
    return table, rel, groups


@pytest.mark.parametrize("with_train_groups", [True, False])
def test_ranking_baselines(with_train_groups: bool) -> None:
    train, rel_train, g_train = ranking_tables(7)
    test, rel_test, g_test = ranking_tables(8)
    out = baselines(
        "ranking",
        rel_train,
        rel_test,
        train=train,
        test=test,
        candidates=["noise", "city", "distance"],
        groups_test=g_test,
        groups_train=g_train if with_train_groups else None,
        k=5,
    )
    assert set(out) == {"random", "heuristic"}
    assert out["heuristic"]["column"] == "distance"
    assert "-distance" in out["heuristic"]["description"]
    assert out["heuristic"]["metrics"]["ndcg@5"] > out["random"]["metrics"]["ndcg@5"] + 0.2
    again = baselines("ranking", rel_train, rel_test, groups_test=g_test, k=5)
    assert again["random"] == out["random"]  # seeded


def test_no_candidates_no_heuristic_and_bad_arguments() -> None:
    out = baselines("regression", [1.0, 2.0], [3.0])
    assert set(out) == {"mean", "median"}
    assert out["mean"]["metrics"]["mae"] == 1.5
    assert math.isnan(out["mean"]["metrics"]["r2"])
    with pytest.raises(UsageError) as info:
        baselines("binary", [0, 1], [1], candidates=["x"])
    assert info.value.details["argument"] == "train"
    t = pa.table({"x": ["a", "b"]})
    with pytest.raises(UsageError) as info:
        baselines("binary", [0, 1], [1, 0], train=t, test=t, candidates=["y"])
    assert info.value.details["argument"] == "candidates"
    with pytest.raises(UsageError) as info:
        baselines("binary", [0, 1, 1], [1, 0], train=t, test=t, candidates=["x"])
    assert info.value.details["argument"] == "y_train"
    with pytest.raises(UsageError) as info:
        baselines("ranking", [0, 1], [1, 0])
    assert info.value.details["argument"] == "groups_test"
    with pytest.raises(UsageError) as info:
        baselines("binary", [], [1])
    assert info.value.details["argument"] == "y_train"
    # A column with too many values is no lookup table: no heuristic at all.
    ids = pa.table({"id": [f"r{i}" for i in range(300)]})
    y = np.arange(300) % 2
    assert "heuristic" not in baselines("binary", y, y, train=ids, test=ids, candidates=["id"])
