"""Behavioural tests and permutation importance on functions whose behaviour is known."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.linear_model import LogisticRegression

from loopml.errors import UsageError
from loopml.evaluation import (
    directional_test,
    invariance_test,
    permutation_importance,
    perturbation_test,
)


def sample(n: int = 500, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "x": rng.normal(0, 1, n),
            "count": rng.integers(0, 100, n),
            "sex": rng.choice(["f", "m"], n),
            "city": pa.array(rng.choice(["a", "b", "c"], n)).dictionary_encode(),
        }
    )


def ignores_sex(t: pa.Table) -> np.ndarray:
    return 1 / (1 + np.exp(-t["x"].to_numpy()))


def uses_sex(t: pa.Table) -> np.ndarray:
    male = pc.equal(t["sex"], "m").to_numpy(zero_copy_only=False)
    return ignores_sex(t) + 0.01 * male


def test_invariance() -> None:
    table = sample()
    ok = invariance_test(ignores_sex, table, "sex")
    assert ok["passed"] and ok["max_abs_change"] == 0.0 and ok["variants"] == 1
    bad = invariance_test(uses_sex, table, "sex")
    assert not bad["passed"] and bad["max_abs_change"] == pytest.approx(0.01)
    assert 0.3 < bad["share_changed"] < 0.7  # a shuffle leaves about half the rows the same
    each = invariance_test(uses_sex, table, "sex", values=["f", "m"])
    assert (
        not each["passed"] and each["variants"] == 2 and each["share_changed"] == pytest.approx(0.5)
    )
    assert invariance_test(ignores_sex, table, "city", values=["a", "z"])["passed"]
    with pytest.raises(UsageError) as info:
        invariance_test(ignores_sex, table, "count", values=["not a number"])
    assert info.value.details["argument"] == "values"
    with pytest.raises(UsageError) as info:
        invariance_test(ignores_sex, table, "nope")
    assert info.value.details["argument"] == "column"


def test_directional_monotone_passes_non_monotone_fails() -> None:
    table = sample()
    up = directional_test(lambda t: 2 * t["x"].to_numpy(), table, "x", direction=+1)
    assert up["passed"] and up["violation_rate"] == 0.0 and up["share_moved"] == 1.0
    assert up["delta"] == pytest.approx(np.std(table["x"].to_numpy()))
    assert up["mean_change"] == pytest.approx(2 * up["delta"])
    down = directional_test(lambda t: 2 * t["x"].to_numpy(), table, "x", direction=-1)
    assert not down["passed"] and down["violation_rate"] == 1.0
    bowl = directional_test(lambda t: t["x"].to_numpy() ** 2, table, "x", direction=+1)
    assert not bowl["passed"] and 0.2 < bowl["violation_rate"] < 0.8
    flat = directional_test(lambda t: np.zeros(t.num_rows), table, "x", direction=+1)
    assert flat["passed"] and flat["share_moved"] == 0.0
    lenient = directional_test(
        lambda t: t["x"].to_numpy() ** 2, table, "x", direction=+1, max_violation_rate=0.9
    )
    assert lenient["passed"]


def test_directional_keeps_integers_and_nulls() -> None:
    values = pa.array([1, 2, None, 4], type=pa.int32())
    table = pa.table({"n": values})
    seen: list[pa.Table] = []

    def predict(t: pa.Table) -> np.ndarray:
        seen.append(t)
        return t["n"].cast(pa.float64()).fill_null(0.0).to_numpy()

    out = directional_test(predict, table, "n", direction=1, delta=3)
    assert out["passed"] and out["rows"] == 3 and out["delta"] == 3.0
    assert seen[-1]["n"].type == pa.int32()
    assert seen[-1]["n"].to_pylist() == [4, 5, None, 7]
    directional_test(predict, table, "n", direction=1, delta=0.5)
    assert seen[-1]["n"].type == pa.float64() and seen[-1]["n"].null_count == 1


def test_directional_refusals() -> None:
    table = sample(50)
    for kwargs, argument in [
        ({"column": "sex", "direction": 1}, "column"),
        ({"column": "x", "direction": 2}, "direction"),
        ({"column": "x", "direction": True}, "direction"),
    ]:
        with pytest.raises(UsageError) as info:
            directional_test(ignores_sex, table, **kwargs)
        assert info.value.details["argument"] == argument
    constant = pa.table({"c": [1.0] * 5})
    with pytest.raises(UsageError) as info:
        directional_test(lambda t: np.zeros(5), constant, "c", direction=1)
    assert info.value.details["argument"] == "delta"
    with pytest.raises(UsageError) as info:
        directional_test(lambda t: np.zeros((5, 2)), constant, "c", direction=1, delta=1.0)
    assert info.value.details["argument"] == "predict"


def test_perturbation_smooth_passes_step_near_edge_fails() -> None:
    table = sample()
    smooth = perturbation_test(ignores_sex, table)
    assert smooth["passed"] and smooth["columns"] == ["x", "count"]
    assert 0 < smooth["max_abs_change"] < 0.05 and smooth["decision_flip_rate"] < 0.05
    rng = np.random.default_rng(1)
    near_edge = pa.table({"x": np.r_[rng.uniform(0.499, 0.501, 200), np.zeros(100), np.ones(100)]})

    def step(t: pa.Table) -> np.ndarray:
        return (t["x"].to_numpy() >= 0.5).astype(float)

    stepped = perturbation_test(step, near_edge, columns=["x"])
    assert not stepped["passed"]
    assert stepped["share_changed_over_tolerance"] > 0.2
    assert stepped["decision_flip_rate"] == stepped["share_changed_over_tolerance"]
    assert perturbation_test(step, near_edge, columns=["x"]) == stepped  # seeded


def test_perturbation_details() -> None:
    table = pa.table(
        {
            "x": pa.array([1.0, None, 3.0, float("nan"), 5.0] * 20),
            "n": pa.array([1, 2, None, 4, 5] * 20, type=pa.int16()),
            "f32": pa.array(np.arange(100, dtype=np.float32)),
            "s": ["a"] * 100,
        }
    )
    seen: list[pa.Table] = []

    def predict(t: pa.Table) -> np.ndarray:
        seen.append(t)
        return np.full(t.num_rows, 7.0)  # scores, not probabilities

    out = perturbation_test(predict, table)
    assert out["columns"] == ["x", "n", "f32"] and out["decision_flip_rate"] is None
    after = seen[-1]
    assert after["x"].null_count == 20 and after["n"].null_count == 20
    assert int(pc.sum(pc.is_nan(after["x"].drop_null())).as_py()) == 20
    assert after["n"].type == pa.float64() and after["f32"].type == pa.float32()
    assert after["s"].equals(table["s"])
    assert not after["x"].equals(table["x"])
    empty = perturbation_test(predict, table, columns=[])
    assert empty["passed"] and empty["max_abs_change"] == 0.0 and empty["columns"] == []
    with pytest.raises(UsageError) as info:
        perturbation_test(predict, table, columns=["s"])
    assert info.value.details["argument"] == "columns"
    with pytest.raises(UsageError) as info:
        perturbation_test(predict, table.slice(0, 0))
    assert info.value.details["argument"] == "table"
    with pytest.raises(UsageError) as info:
        perturbation_test(lambda t: np.zeros(3), table)
    assert info.value.details["argument"] == "predict"


def test_perturbation_with_class_probabilities() -> None:
    table = sample()

    def proba(t: pa.Table) -> np.ndarray:
        p = ignores_sex(t)
        return np.c_[1 - p, p]

    out = perturbation_test(proba, table, scale=0.5, seed=1)
    assert 0 < out["decision_flip_rate"] < 0.5


def test_permutation_importance_ranks_informative_first() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    table = pa.table(
        {
            "noise": rng.normal(size=n),
            "x": rng.normal(size=n),
            "weak": rng.normal(size=n),
        }
    )
    logit = 3 * table["x"].to_numpy() + 0.5 * table["weak"].to_numpy()
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    columns = ["noise", "x", "weak"]
    model = LogisticRegression().fit(np.column_stack([table[c].to_numpy() for c in columns]), y)

    def predict(t: pa.Table) -> np.ndarray:
        return model.predict_proba(np.column_stack([t[c].to_numpy() for c in columns]))[:, 1]

    ranked = permutation_importance(
        predict, table, y, task="binary", metric="roc_auc", columns=columns
    )
    assert [r["column"] for r in ranked] == ["x", "weak", "noise"]
    assert ranked[0]["importance"] > 0.2 and abs(ranked[-1]["importance"]) < 0.01
    assert all(r["std"] >= 0 and r["metric"] == "roc_auc" for r in ranked)
    by_loss = permutation_importance(
        predict, table, y, task="binary", metric="log_loss", columns=columns, repeats=2
    )
    assert by_loss[0]["column"] == "x" and by_loss[0]["importance"] > 0
    with pytest.raises(UsageError) as info:
        permutation_importance(predict, table, y, task="binary", metric="rmse", columns=columns)
    assert info.value.details["argument"] == "metric"
    with pytest.raises(UsageError) as info:
        permutation_importance(predict, table, y, task="binary", metric="f1", columns=["z"])
    assert info.value.details["argument"] == "columns"
