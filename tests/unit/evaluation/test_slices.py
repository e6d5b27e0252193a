"""Slice-based evaluation: a deliberately bad slice must come out worst."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest

from loopml.errors import UsageError
from loopml.evaluation import metrics, slice_metrics, worst_slices


def dataset(n: int = 4000, seed: int = 0) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Good predictions everywhere except region 'd' and age >= 75, where they are noise."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["a", "b", "c", "d"], n)
    age = rng.uniform(0, 100, n)
    y = rng.integers(0, 2, n)
    good = np.clip(y * 0.6 + rng.normal(0.2, 0.2, n), 0, 1)
    bad_rows = region == "d"
    p = np.where(bad_rows, rng.random(n), good)
    table = pa.table(
        {
            "region": region,
            "region_dict": pa.array(region).dictionary_encode(),
            "age": age,
            "flag": rng.random(n) < 0.5,
        }
    )
    return table, y, p


def test_bad_slice_is_ranked_worst() -> None:
    table, y, p = dataset()
    rows = slice_metrics(
        "binary", table, y, p, columns=["region", "region_dict", "flag"], metric="roc_auc"
    )
    overall = metrics("binary", y, p)["roc_auc"]
    worst = {(w["column"], w["slice"]) for w in worst_slices(rows, n=2)}
    assert worst == {("region", "d"), ("region_dict", "d")}
    d = next(r for r in rows if r["column"] == "region" and r["slice"] == "d")
    assert d["metric"] == "roc_auc"
    assert d["gap"] == pytest.approx(overall - d["roc_auc"]) and d["gap"] > 0.2
    in_d = table["region"].to_numpy(zero_copy_only=False) == "d"
    assert d["roc_auc"] == pytest.approx(metrics("binary", y[in_d], p[in_d])["roc_auc"])
    others = [r for r in rows if r["column"] == "region" and r["slice"] != "d"]
    assert all(r["gap"] < 0 for r in others)
    # Value slices come largest first; bool values are labelled by str().
    sizes = [r["rows"] for r in rows if r["column"] == "region"]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == table.num_rows
    assert {r["slice"] for r in rows if r["column"] == "flag"} == {"True", "False"}


def test_gap_sign_for_lower_is_better_metrics() -> None:
    table, y, p = dataset()
    rows = slice_metrics("binary", table, y, p, columns=["region"], metric="log_loss")
    overall = metrics("binary", y, p)["log_loss"]
    d = next(r for r in rows if r["slice"] == "d")
    assert d["gap"] == pytest.approx(d["log_loss"] - overall) and d["gap"] > 0
    assert worst_slices(rows, n=1)[0]["slice"] == "d"


def test_numeric_buckets_and_bad_bucket() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    age = rng.uniform(0, 100, n)
    y = rng.normal(0, 1, n)
    pred = y + np.where(age >= 75, rng.normal(0, 3, n), rng.normal(0, 0.1, n))
    age_with_nulls = pa.array(np.where(np.arange(n) < 100, np.nan, age), mask=np.arange(n) < 50)
    table = pa.table({"age": age_with_nulls, "years": np.round(age).astype(np.int64)})
    rows = slice_metrics("regression", table, y, pred, columns=["age", "years"], metric="rmse")
    age_rows = [r for r in rows if r["column"] == "age"]
    labels = [r["slice"] for r in age_rows]
    assert len(labels) == 5 and labels[-1] == "null"
    assert labels[0].startswith("[") and labels[0].endswith(")")
    assert labels[3].endswith("]")
    assert age_rows[-1]["rows"] == 100  # nulls and NaN together
    assert [r["rows"] for r in age_rows[:4]] == pytest.approx([975] * 4, abs=2)
    assert worst_slices(rows, n=1)[0]["slice"] == age_rows[3]["slice"]
    lower, upper = (float(x) for x in age_rows[3]["slice"].strip("[]").split(", "))
    assert lower == pytest.approx(np.quantile(age[100:], 0.75), rel=1e-5) and upper <= 100
    year_labels = [r["slice"] for r in rows if r["column"] == "years"]
    assert year_labels[0].startswith("[0, ")  # integers print without ".0"


def test_other_null_and_small_slices() -> None:
    n = 3000
    rng = np.random.default_rng(2)
    city = np.array(["x"] * 2850 + ["y"] * 30 + ["z"] * 20 + [None] * 100, dtype=object)
    y = rng.integers(0, 2, n)
    p = rng.random(n)
    table = pa.table({"city": city, "few": np.where(np.arange(n) < 3000, 1.0, 0.0)})
    rows = slice_metrics("binary", table, y, p, columns=["city"], metric="f1", min_rows=50)
    assert [(r["slice"], r["rows"]) for r in rows] == [("x", 2850), ("(other)", 50), ("null", 100)]
    assert all(math.isfinite(r["f1"]) for r in rows)
    rows = slice_metrics("binary", table, y, p, columns=["city"], metric="f1", min_rows=60)
    other = rows[1]
    assert other["slice"] == "(other)" and math.isnan(other["f1"]) and math.isnan(other["gap"])
    assert "(other)" not in {r["slice"] for r in worst_slices(rows)}
    # Low-cardinality numeric columns slice by value.
    rows = slice_metrics("binary", table, y, p, columns=["few"], metric="f1")
    assert [r["slice"] for r in rows] == ["1"]


def test_single_class_slice_has_nan_auc() -> None:
    y = np.array([1] * 100 + [0, 1] * 50)
    p = np.linspace(0, 1, 200)
    table = pa.table({"part": ["all_positive"] * 100 + ["mixed"] * 100})
    rows = slice_metrics("binary", table, y, p, columns=["part"], metric="roc_auc")
    assert math.isnan(rows[0]["roc_auc"]) and math.isfinite(rows[1]["roc_auc"])
    assert [r["slice"] for r in worst_slices(rows)] == ["mixed"]


def test_multiclass_slices_keep_all_classes() -> None:
    rng = np.random.default_rng(3)
    n = 600
    y = np.repeat(["cat", "dog", "eel"], n // 3)
    proba = rng.dirichlet(np.ones(3), n)
    table = pa.table({"kind": y})  # each slice holds a single class
    rows = slice_metrics("multiclass", table, y, proba, columns=["kind"], metric="log_loss")
    assert [r["rows"] for r in rows] == [200, 200, 200]
    assert all(math.isfinite(r["log_loss"]) for r in rows)


def test_ranking_slices_use_groups() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(100), 10)
    rel = rng.integers(0, 3, 1000).astype(float)
    scores = rel + rng.normal(0, 1, 1000)
    table = pa.table({"market": np.where(groups < 50, "us", "eu")})
    rows = slice_metrics(
        "ranking", table, rel, scores, columns=["market"], metric="ndcg@5", groups=groups, k=5
    )
    us = rows[0] if rows[0]["slice"] == "us" else rows[1]
    rows_us = groups < 50
    expected = metrics("ranking", rel[rows_us], scores[rows_us], groups=groups[rows_us], k=5)
    assert us["ndcg@5"] == pytest.approx(expected["ndcg@5"])


def test_slice_bad_arguments() -> None:
    table, y, p = dataset(200)
    with pytest.raises(UsageError) as info:
        slice_metrics("binary", table, y, p, columns=["nope"], metric="f1")
    assert info.value.details["argument"] == "columns"
    with pytest.raises(UsageError) as info:
        slice_metrics("binary", table, y, p, columns=["region"], metric="n")
    assert info.value.details["argument"] == "metric"
    with pytest.raises(UsageError) as info:
        slice_metrics("binary", table, y, p, columns=["region"], metric="rmse")
    assert info.value.details["argument"] == "metric"
    with pytest.raises(UsageError) as info:
        slice_metrics("binary", table, y[:10], p, columns=["region"], metric="f1")
    assert info.value.details["argument"] == "y_true"
    stamped = table.append_column("at", pa.array([dt.datetime(2024, 1, 1)] * 200))
    with pytest.raises(UsageError) as info:
        slice_metrics("binary", stamped, y, p, columns=["at"], metric="f1")
    assert info.value.details["column"] == "at"
    with pytest.raises(UsageError) as info:
        slice_metrics("binary", table, y, p, columns=["age"], metric="f1", numeric_bins=0)
    assert info.value.details["argument"] == "numeric_bins"
