"""Every task and estimator kind on synthetic data with a known signal: multiclass, regression,
ranking (LambdaRank), any scikit-learn estimator saved with skops, and its warm start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from loopml import IntegrityError, Project, UsageError
from loopml.spec import SplitSpec
from loopml.training import Model, split
from loopml.training._train import class_weights, resample

BASE = """\
project: tasks
sources:
  items: {format: csv, timestamp: t, primary_key: [id]}
features:
  event: {source: items}
  request: [id, t, x1, x2, cat, query]
  label: {name: target, expr: "LABEL"}
  vector: [x1, x2, cat]
model:
  name: m
  task: TASK
  estimator: ESTIMATOR
  params: PARAMS
  GROUP
  split: {method: SPLIT, test: 0.25, valid: 0.15, column: SPLITCOL}
gate: {backtest: null}
"""


def items(n: int = 3000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    score = 2 * x1 - x2 + (cat == "a") * 1.5
    return pa.table(
        {
            "id": np.arange(n),
            "t": pa.array(1_600_000_000 + np.arange(n) * 60, pa.timestamp("s", tz="UTC")),
            "x1": x1,
            "x2": x2,
            "cat": cat,
            "query": np.arange(n) // 20,
            "flag": score + rng.normal(scale=0.5, size=n) > 0.5,
            "kind": np.where(score > 1, "high", np.where(score > -1, "mid", "low")),
            "value": 3 * x1 + rng.normal(scale=0.3, size=n),
            "grade": np.clip(np.round(score + 2), 0, 4).astype(np.int64),
        }
    )


def project_for(make_project: Callable[..., Project], tmp_path: Path, **subs: str) -> Project:
    spec = BASE
    defaults = {
        "LABEL": "flag",
        "TASK": "binary",
        "ESTIMATOR": "lightgbm",
        "PARAMS": "{n_estimators: 60, num_leaves: 15}",
        "GROUP": "",
        "SPLIT": "time",
        "SPLITCOL": "null",
    }
    for k, v in sorted({**defaults, **subs}.items(), key=lambda kv: -len(kv[0])):
        spec = spec.replace(k, v)
    p = make_project(spec, folder=f"p{abs(hash(spec)) % 10**8}")
    path = tmp_path / "items.csv"
    pacsv.write_csv(items(), path)
    p.data.ingest("items", [path])
    return p


def test_multiclass(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = project_for(make_project, tmp_path, LABEL="kind", TASK="multiclass")
    r = p.models.train()
    m = r.trained.report["metrics"]
    assert m["macro_f1"] > r.trained.report["baselines"]["majority"]["metrics"]["macro_f1"] + 0.3
    model = p.models.load(r.version.version)  # type: ignore[union-attr]
    assert model.classes == ["high", "low", "mid"]
    scores = model.predict(r.trained.test.slice(0, 4))
    assert scores.shape == (4, 3) and np.allclose(scores.sum(axis=1), 1)


def test_regression(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = project_for(make_project, tmp_path, LABEL="value", TASK="regression")
    r = p.models.train()
    rep = r.trained.report
    assert rep["metrics"]["rmse"] < 0.5 * rep["baselines"]["mean"]["metrics"]["rmse"]
    assert p.models.evaluate(r.version.version).passed  # type: ignore[union-attr]


def test_ranking(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = project_for(
        make_project,
        tmp_path,
        LABEL="grade",
        TASK="ranking",
        GROUP="group: query",
        SPLIT="group",
        SPLITCOL="query",
    )
    r = p.models.train()
    rep = r.trained.report
    assert rep["metrics"]["ndcg@10"] > rep["baselines"]["random"]["metrics"]["ndcg@10"] + 0.1
    assert p.models.spec.params and r.trained.model.params["n_estimators"] == 60


def test_sklearn_estimator_with_skops(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = project_for(
        make_project,
        tmp_path,
        ESTIMATOR="sklearn.linear_model:LogisticRegression",
        PARAMS="{C: 1.0, max_iter: 200}",
    )
    r = p.models.train()
    v = r.version
    assert v is not None and v.format == "sklearn" and "model.skops" in v.files and v.trusted_types
    assert r.trained.report["metrics"]["roc_auc"] > 0.9
    assert "permutation" in r.trained.report["importance"]
    model = p.models.load(v.version)
    rows = r.trained.test.slice(0, 10)
    assert np.allclose(model.predict(rows), r.trained.model.predict(rows))
    files = p.registry.load_files(v)
    with pytest.raises(IntegrityError, match="refusing"):
        Model.from_files(files, trusted_types=[])  # nothing beyond the recorded types loads


def test_sklearn_warm_start(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = project_for(
        make_project,
        tmp_path,
        ESTIMATOR="sklearn.linear_model:SGDClassifier",
        PARAMS="{loss: log_loss, random_state: 0}",
    )
    from datetime import UTC, datetime

    first = p.models.train(as_of=datetime(2020, 9, 14, 12, tzinfo=UTC))
    child = p.models.train(warm_start=str(first.version.version))  # type: ignore[union-attr]
    assert child.version.lineage["parent"] == first.version.ref  # type: ignore[union-attr]
    assert child.trained.report["metrics"]["roc_auc"] > 0.85


def test_bad_estimators_are_clear(make_project: Callable[..., Project], tmp_path: Path) -> None:
    p = project_for(make_project, tmp_path, ESTIMATOR="sklearn.linear_model:NoSuchModel")
    with pytest.raises(UsageError, match="cannot be imported"):
        p.models.train()
    q = project_for(
        make_project,
        tmp_path,
        ESTIMATOR="sklearn.linear_model:LogisticRegression",
        PARAMS="{bogus: 1}",
    )
    with pytest.raises(UsageError, match=r"model\.params"):
        q.models.train()


def test_splits() -> None:
    t = items(1000)
    time_split = split(
        t.append_column("_event_time", t["t"]),
        SplitSpec(method="time", test=0.2, valid=0.1),
        label="flag",
    )
    assert time_split.test.min() > time_split.train.max() and time_split.sizes() == {
        "train": 700,
        "valid": 100,
        "test": 200,
    }
    strat = split(t, SplitSpec(method="stratified", test=0.2, valid=0.1), label="flag")
    y = np.asarray(t["flag"])
    assert (
        abs(y[strat.test].mean() - y.mean()) < 0.01 and abs(y[strat.train].mean() - y.mean()) < 0.01
    )
    grouped = split(t, SplitSpec(method="group", test=0.2, valid=0.1, column="query"), label="flag")
    q = np.asarray(t["query"])
    assert not set(q[grouped.test]) & set(q[grouped.train]) and not set(q[grouped.valid]) & set(
        q[grouped.train]
    )
    assert len(grouped.train) + len(grouped.valid) + len(grouped.test) == 1000


def test_class_weights_and_resampling() -> None:
    y = np.array([0] * 90 + [1] * 10, dtype=float)
    w = class_weights(y)
    assert np.isclose(w[y == 0].sum(), w[y == 1].sum())
    idx = np.arange(100)
    over = resample(idx, y, "over", 1.0, 0)
    assert (y[over] == 1).sum() == 90 and (y[over] == 0).sum() == 90
    under = resample(idx, y, "under", 1.0, 0)
    assert (y[under] == 0).sum() == 10 and (y[under] == 1).sum() == 10
    half = resample(idx, y, "over", 0.5, 0)
    assert (y[half] == 1).sum() == 45
