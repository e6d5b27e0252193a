"""Baselines a model must beat: a constant, and the best one-column lookup table fit on train."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError
from loopml.evaluation._args import (
    FloatArray,
    IntArray,
    as_binary,
    as_codes,
    as_float,
    as_labels,
    check_columns,
    check_int,
    check_length,
    check_task,
    encode,
    is_categorical,
    is_numeric,
    numeric_values,
)
from loopml.evaluation._metrics import metrics, ranking_metrics

MAX_VALUES = 200  # a candidate column with more distinct train values is not a lookup table
NUMERIC_BUCKETS = 10  # numeric candidates are cut at their train deciles
FOLDS = 5  # columns are compared by out-of-fold train loss, so memorizing does not pay
PSEUDO_ROWS = 1.0  # per-value estimates are shrunk toward the prior by this many rows

Loss = Callable[[FloatArray, FloatArray], FloatArray]


def baselines(
    task: str,
    y_train: Any,
    y_test: Any,
    *,
    train: pa.Table | None = None,
    test: pa.Table | None = None,
    candidates: Sequence[str] = (),
    classes: Sequence[Any] | None = None,
    groups_test: Any = None,
    groups_train: Any = None,
    k: int = 10,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Simple baselines fit on train and scored on test with :func:`metrics`: name ->
    ``{"description", "metrics"}`` (and ``"column"`` for the heuristic).

    * binary: ``"prior"``, the train positive rate for every row;
    * multiclass: ``"majority"``, the train class frequencies for every row (its accuracy is the
      majority class's);
    * regression: ``"mean"`` and ``"median"`` of the train target;
    * ranking: ``"random"``, scores drawn with ``seed`` (needs ``groups_test``);
    * all tasks: ``"heuristic"``, when a candidate column qualifies.

    For binary, multiclass and regression the heuristic is a lookup table on one column of
    ``candidates``: the positive rate, class frequencies or mean target per value, each shrunk
    toward the overall train value by one pseudo-row (so a value seen once does not predict 0 or
    1), and the overall train value for values not seen in train. String, bool and dictionary
    columns qualify with at most 200 distinct train values, numeric ones are cut at their train
    deciles; nulls are a value of their own. The column chosen is the one with the lowest
    5-fold out-of-fold train log loss (squared error for regression), so a many-valued noise
    column cannot win by memorizing train.

    For ranking the heuristic scores rows by one numeric candidate, in whichever direction ranks
    train better (nulls last): by mean ``ndcg@k`` over train queries when ``groups_train`` is
    given, otherwise by Spearman correlation with the train relevance.

    >>> import pyarrow as pa
    >>> train = pa.table({"city": ["a", "a", "b", "b"]})
    >>> out = baselines("binary", [1, 1, 0, 1], [1, 0], train=train, test=train.slice(1, 2),
    ...                 candidates=["city"])
    >>> out["prior"]["metrics"]["log_loss"] > out["heuristic"]["metrics"]["log_loss"]
    True
    """
    task = check_task(task)
    y_tr: np.ndarray
    y_te: np.ndarray
    target: FloatArray
    names = [candidates] if isinstance(candidates, str) else list(candidates)
    if names:
        for arg, tab in (("train", train), ("test", test)):
            if not isinstance(tab, pa.Table):
                raise UsageError(
                    f"candidates need the {arg} table (a pyarrow Table), got {type(tab).__name__}",
                    details={"argument": arg},
                )
            check_columns(tab, names, "candidates")
    rng = np.random.default_rng(check_int("seed", seed))
    if task == "ranking":
        return _ranking(y_train, y_test, train, test, names, groups_train, groups_test, k, rng)
    if task == "binary":
        y_tr = as_binary(y_train, "y_train")
        y_te = as_binary(y_test, "y_test")
    elif task == "multiclass":
        y_tr = as_labels(y_train, "y_train")
        y_te = as_labels(y_test, "y_test")
    else:
        y_tr = as_float(y_train, "y_train")
        y_te = as_float(y_test, "y_test")
    for arg, y, tab in (("y_train", y_tr, train), ("y_test", y_te, test)):
        if len(y) == 0:
            raise UsageError(f"{arg} is empty; baselines need rows", details={"argument": arg})
        if names and tab is not None:
            check_length(arg, y, tab.num_rows)

    out: dict[str, dict[str, Any]] = {}
    if task == "binary":
        target = y_tr.astype(np.float64)[:, None]
        prior = target.mean(axis=0)
        out["prior"] = {
            "description": f"the train positive rate {prior[0]:.4g} for every row",
            "metrics": metrics("binary", y_te, np.full(len(y_te), prior[0])),
        }
        loss, what, finish = _binary_loss, "positive rate", _first_column
        score_kwargs: dict[str, Any] = {}
    elif task == "multiclass":
        classes_arr = (
            np.asarray(list(classes))
            if classes is not None
            else as_codes(np.concatenate([y_tr, y_te]), "y_train")[1]
        )
        codes = encode(y_tr, classes_arr, "y_train")
        encode(y_te, classes_arr, "y_test")
        target = np.eye(len(classes_arr))[codes]
        prior = target.mean(axis=0)
        majority = classes_arr[int(prior.argmax())]
        score_kwargs = {"classes": classes_arr}
        out["majority"] = {
            "description": f"the train class frequencies for every row (majority {majority!r})",
            "metrics": metrics("multiclass", y_te, np.tile(prior, (len(y_te), 1)), **score_kwargs),
        }
        loss, what, finish = _multiclass_loss, "class frequencies", _all_columns
    else:
        target = y_tr.astype(np.float64)[:, None]
        prior = target.mean(axis=0)
        median = float(np.median(y_tr))
        out["mean"] = {
            "description": f"the train mean {prior[0]:.4g} for every row",
            "metrics": metrics("regression", y_te, np.full(len(y_te), prior[0])),
        }
        out["median"] = {
            "description": f"the train median {median:.4g} for every row",
            "metrics": metrics("regression", y_te, np.full(len(y_te), median)),
        }
        loss, what, finish = _squared_error, "mean target", _first_column
        score_kwargs = {}

    best = _best_lookup(names, train, test, target, prior, loss, rng)
    if best is not None:
        column, codes_tr, codes_te, m, n_usable = best
        table = _group_means(codes_tr, m, target, prior)
        pred = np.where((codes_te >= 0)[:, None], table[np.maximum(codes_te, 0)], prior)
        out["heuristic"] = {
            "description": (
                f"the train {what} per value of {column!r} (numeric columns by train decile), "
                f"chosen among {n_usable} usable candidates by {FOLDS}-fold out-of-fold train "
                "loss; unseen values get the overall train value"
            ),
            "column": column,
            "metrics": metrics(task, y_te, finish(pred), **score_kwargs),
        }
    return out


def _first_column(pred: FloatArray) -> FloatArray:
    return pred[:, 0]


def _all_columns(pred: FloatArray) -> FloatArray:
    return pred


def _binary_loss(target: FloatArray, pred: FloatArray) -> FloatArray:
    eps = np.finfo(np.float64).eps
    p = np.clip(pred[:, 0], eps, 1.0 - eps)
    return np.asarray(-np.where(target[:, 0] > 0, np.log(p), np.log1p(-p)), dtype=np.float64)


def _multiclass_loss(target: FloatArray, pred: FloatArray) -> FloatArray:
    eps = np.finfo(np.float64).eps
    return np.asarray(-np.log(np.clip((target * pred).sum(axis=1), eps, 1.0)), dtype=np.float64)


def _squared_error(target: FloatArray, pred: FloatArray) -> FloatArray:
    return np.asarray(((target - pred) ** 2).sum(axis=1), dtype=np.float64)


def _sums(codes: IntArray, m: int, target: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Row count and target sums per code: shapes (m,) and (m, d)."""
    count = np.asarray(np.bincount(codes, minlength=m), dtype=np.float64)
    sums = np.stack(
        [np.bincount(codes, weights=target[:, j], minlength=m) for j in range(target.shape[1])],
        axis=1,
    )
    return count, np.asarray(sums, dtype=np.float64)


def _group_means(codes: IntArray, m: int, target: FloatArray, prior: FloatArray) -> FloatArray:
    count, sums = _sums(codes, m, target)
    return np.asarray((sums + PSEUDO_ROWS * prior) / (count + PSEUDO_ROWS)[:, None])


def _oof_loss(codes: IntArray, m: int, target: FloatArray, folds: IntArray, loss: Loss) -> float:
    """Mean loss of the lookup table when each fold is predicted from the other folds only."""
    n_folds = int(folds.max()) + 1
    count_fv, sums_fv = _sums(folds * m + codes, n_folds * m, target)
    count_fv = count_fv.reshape(n_folds, m)
    sums_fv = sums_fv.reshape(n_folds, m, -1)
    count_v, sums_v = count_fv.sum(axis=0), sums_fv.sum(axis=0)
    rest_n = len(codes) - count_fv.sum(axis=1)
    rest_prior = (target.sum(axis=0) - sums_fv.sum(axis=1)) / rest_n[:, None]
    est = (sums_v - sums_fv + PSEUDO_ROWS * rest_prior[:, None, :]) / (
        count_v - count_fv + PSEUDO_ROWS
    )[:, :, None]
    return float(loss(target, est[folds, codes]).mean())


def _best_lookup(
    names: list[str],
    train: pa.Table | None,
    test: pa.Table | None,
    target: FloatArray,
    prior: FloatArray,
    loss: Loss,
    rng: np.random.Generator,
) -> tuple[str, IntArray, IntArray, int, int] | None:
    if not names or train is None or test is None or len(target) < 2:
        return None
    folds = (rng.permutation(len(target)) % min(FOLDS, len(target))).astype(np.int64)
    best: tuple[float, str, IntArray, IntArray, int] | None = None
    usable = 0
    for name in names:
        encoded = _lookup_codes(train[name], test[name], name)
        if encoded is None:
            continue
        usable += 1
        codes_tr, codes_te, m = encoded
        value = _oof_loss(codes_tr, m, target, folds, loss)
        if best is None or value < best[0]:
            best = (value, name, codes_tr, codes_te, m)
    if best is None:
        return None
    return best[1], best[2], best[3], best[4], usable


def _lookup_codes(
    train_col: pa.ChunkedArray, test_col: pa.ChunkedArray, name: str
) -> tuple[IntArray, IntArray, int] | None:
    """Codes 0..m-1 of train and test rows for a lookup on one column (test values unseen in
    train get -1), and m; None when the column does not qualify."""
    if is_categorical(train_col.type):
        tr = train_col.combine_chunks()
        te = test_col.combine_chunks()
        if pa.types.is_dictionary(tr.type):
            tr = tr.dictionary_decode()
        if pa.types.is_dictionary(te.type):
            te = te.dictionary_decode()
        encoded = pc.dictionary_encode(tr)
        n_values = len(encoded.dictionary)
        if n_values > MAX_VALUES:
            return None
        try:
            te = te.cast(tr.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UsageError(
                f"candidate column {name!r} has type {tr.type} in train but {test_col.type} in "
                f"test: {exc}",
                details={"argument": "candidates", "column": name},
            ) from exc
        null = n_values  # nulls are a value of their own
        codes_tr = encoded.indices.fill_null(null).to_numpy(zero_copy_only=False)
        found = pc.index_in(te, value_set=encoded.dictionary).fill_null(-1)
        codes_te = np.where(
            te.is_null().to_numpy(zero_copy_only=False),
            null,
            found.to_numpy(zero_copy_only=False),
        )
        return codes_tr.astype(np.int64), codes_te.astype(np.int64), n_values + 1
    if is_numeric(train_col.type):
        if not is_numeric(test_col.type):
            raise UsageError(
                f"candidate column {name!r} is numeric in train but {test_col.type} in test",
                details={"argument": "candidates", "column": name},
            )
        x_tr, ok_tr = numeric_values(train_col)
        x_te, ok_te = numeric_values(test_col)
        if not ok_tr.any():
            return None
        levels = np.linspace(0.0, 1.0, NUMERIC_BUCKETS + 1)[1:-1]
        edges = np.unique(np.quantile(x_tr[ok_tr], levels))
        null = len(edges) + 1
        codes_tr = np.where(ok_tr, np.searchsorted(edges, x_tr, side="right"), null)
        codes_te = np.where(ok_te, np.searchsorted(edges, x_te, side="right"), null)
        return codes_tr.astype(np.int64), codes_te.astype(np.int64), null + 1
    return None


def _null_last(x: FloatArray, ok: np.ndarray, sign: float) -> FloatArray:
    score = sign * np.where(ok, x, 0.0)
    low = float(score[ok].min()) - 1.0 if ok.any() else 0.0
    return np.where(ok, score, low)


def _ranking(
    y_train: Any,
    y_test: Any,
    train: pa.Table | None,
    test: pa.Table | None,
    names: list[str],
    groups_train: Any,
    groups_test: Any,
    k: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, Any]]:
    if groups_test is None:
        raise UsageError(
            "task 'ranking' needs groups_test: the query id of every test row",
            details={"argument": "groups_test"},
        )
    k = check_int("k", k, minimum=1)
    rel_te = as_float(y_test, "y_test")
    out: dict[str, dict[str, Any]] = {
        "random": {
            "description": "scores drawn uniformly at random (seeded)",
            "metrics": metrics("ranking", rel_te, rng.random(len(rel_te)), groups=groups_test, k=k),
        }
    }
    numeric = [n for n in names if train is not None and is_numeric(train[n].type)]
    if not numeric or train is None or test is None:
        return out
    rel_tr = as_float(y_train, "y_train")
    check_length("y_train", rel_tr, train.num_rows)
    check_length("y_test", rel_te, test.num_rows)
    q_tr = None
    if groups_train is not None:
        labels = as_labels(groups_train, "groups_train")
        check_length("groups_train", labels, train.num_rows)
        q_tr = as_codes(labels, "groups_train")[0]
    from scipy import stats  # only ranking without train queries needs it

    best: tuple[float, str, float] | None = None
    for name in numeric:
        x, ok = numeric_values(train[name])
        if not ok.any():
            continue
        for sign in (1.0, -1.0):
            score = _null_last(x, ok, sign)
            if q_tr is not None:
                value = ranking_metrics(rel_tr, score, q_tr, k)[f"ndcg@{k}"]
            else:
                value = float(stats.spearmanr(score, rel_tr).statistic)
            if np.isfinite(value) and (best is None or value > best[0]):
                best = (value, name, sign)
    if best is None:
        return out
    _, name, sign = best
    x, ok = numeric_values(test[name])
    criterion = f"mean train ndcg@{k}" if q_tr is not None else "train Spearman correlation"
    out["heuristic"] = {
        "description": (
            f"score = {'' if sign > 0 else '-'}{name} (nulls last), the numeric candidate and "
            f"direction with the best {criterion}"
        ),
        "column": name,
        "metrics": metrics("ranking", rel_te, _null_last(x, ok, sign), groups=groups_test, k=k),
    }
    return out
