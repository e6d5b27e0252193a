"""Importance sampling: reweight or resample reference rows so they follow a target distribution.

The density ratio ``w(x) = p_target(x) / p_reference(x)`` is estimated with a domain classifier:
label reference rows 0 and target rows 1, learn ``P(target | x)``, and use Bayes' rule,
``w(x) = P(target | x) / P(reference | x) * n_reference / n_target``. Then the mean of
``f(x) * w(x)`` over reference rows estimates the mean of ``f`` under the target distribution, and
a weighted draw of reference rows follows the target distribution.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError
from loopml.sampling._args import FloatArray, IntArray, as_weights, check_int
from loopml.sampling._weighted import weighted

_NULL = "\x00null"  # the category of a null value; a string no real category is likely to be


def density_ratio(
    reference: Any,
    target: Any,
    *,
    columns: list[str] | None = None,
    classifier: Any = None,
    clip: tuple[float, float] | None = (0.05, 20.0),
    calibrate_prior: bool = True,
    n_splits: int = 5,
    seed: int | None = None,
) -> FloatArray:
    """For each *reference* row, the importance weight ``p_target(x) / p_reference(x)``.

    ``reference`` and ``target`` are Arrow tables, pandas DataFrames or 2-D numpy arrays (whose
    columns are named ``x0``, ``x1``, ...). ``columns`` picks the features (default: every column
    of ``reference``; ``target`` must have them too). Numeric and boolean columns are imputed
    (median, plus a missing indicator) and standardized; string and dictionary columns are one-hot
    encoded (at most 64 categories each, null a category of its own). Event times separate the two
    sets perfectly and are refused: leave them out with ``columns``.

    ``classifier`` learns ``P(target | x)`` on the encoded features: None or ``"logistic"`` (a
    logistic regression, exact when the log ratio is linear in the features, as for two Gaussians
    with one covariance), ``"lightgbm"`` (gradient-boosted trees, for non-linear shifts), or any
    scikit-learn classifier with ``predict_proba``. The probabilities come from ``n_splits``-fold
    cross-fitting: each row is scored by a model that did not see it, so an overfit classifier
    does not turn into extreme weights.

    With ``calibrate_prior`` the odds are multiplied by ``n_reference / n_target``, which makes
    them an estimate of the density ratio when the two sets differ in size. The ratios are then
    clipped to ``clip`` (``None``: not clipped), which bounds the variance that a few huge weights
    would cause, and divided by their mean so that they average 1.
    """
    ref = _as_table(reference, "reference")
    tgt = _as_table(target, "target")
    names = _pick_columns(ref, tgt, columns)
    splits = check_int("n_splits", n_splits, minimum=2)
    smaller = min(ref.num_rows, tgt.num_rows)
    if smaller < splits:
        which = "reference" if ref.num_rows < tgt.num_rows else "target"
        raise UsageError(
            f"{which} has {smaller} rows, fewer than n_splits={splits}; cross-fitting needs at "
            "least one row of each set per fold",
            details={"argument": which, "rows": smaller, "n_splits": splits},
        )
    bounds = _check_clip(clip)
    model = _classifier(classifier, seed)

    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    frame, numeric, categorical = _features(ref, tgt, names)
    y = np.concatenate([np.zeros(ref.num_rows, np.int8), np.ones(tgt.num_rows, np.int8)])
    pipeline = _pipeline(model, numeric, categorical)
    cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    proba = cross_val_predict(pipeline, frame, y, cv=cv, method="predict_proba")
    p = np.clip(np.asarray(proba, dtype=np.float64)[: ref.num_rows, 1], 1e-12, 1.0 - 1e-12)
    ratio = p / (1.0 - p)
    if calibrate_prior:
        ratio *= ref.num_rows / tgt.num_rows
    if bounds is not None:
        np.clip(ratio, bounds[0], bounds[1], out=ratio)
    result: FloatArray = ratio / ratio.mean()
    return result


def importance_sample(
    reference_rows: int, weights: Any, *, n: int, seed: int | None = None
) -> IntArray:
    """Sorted indices of ``n`` reference rows drawn with replacement, proportionally to ``weights``.

    With the weights of :func:`density_ratio`, the drawn rows follow the target distribution
    (sampling importance resampling). Rows may repeat; how much the sample is worth is about
    :func:`effective_sample_size` of the weights, not ``n``.

    >>> importance_sample(4, [0.0, 1.0, 1.0, 2.0], n=4, seed=0)
    array([1, 1, 2, 3])
    """
    rows = check_int("reference_rows", reference_rows)
    w = as_weights(weights)
    if len(w) != rows:
        raise UsageError(
            f"weights has {len(w)} values but reference_rows is {rows}; give one weight per "
            "reference row",
            details={"argument": "weights", "weights": len(w), "reference_rows": rows},
        )
    return weighted(w, n=n, seed=seed, replace=True)


def effective_sample_size(weights: Any) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of a weighted sample.

    It is the number of unweighted rows that would give an estimate of the same variance: the row
    count for equal weights, 1 when one row holds all the weight.

    >>> effective_sample_size([1.0, 1.0, 1.0, 1.0]), effective_sample_size([0.0, 3.0, 0.0])
    (4.0, 1.0)
    """
    w = as_weights(weights)
    total = float(w.sum())
    if total <= 0.0:
        raise UsageError(
            "weights must have a positive sum (got "
            + ("no weights" if len(w) == 0 else "only zeros")
            + ")",
            details={"argument": "weights", "length": len(w)},
        )
    # Scaling by the largest weight keeps the squares from overflowing.
    s = w / w.max()
    return float(s.sum() ** 2 / np.dot(s, s))


def _as_table(data: Any, name: str) -> pa.Table:
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif isinstance(data, np.ndarray):
        if data.ndim not in (1, 2):
            raise UsageError(
                f"{name} must be a 1-D or 2-D array, got shape {data.shape}",
                details={"argument": name, "shape": list(data.shape)},
            )
        matrix = data.reshape(len(data), -1)
        table = pa.table({f"x{j}": matrix[:, j] for j in range(matrix.shape[1])})
    else:
        import pandas as pd

        if not isinstance(data, pd.DataFrame):
            raise UsageError(
                f"{name} must be an Arrow table, a pandas DataFrame or a numpy array, got "
                f"{type(data).__name__}",
                details={"argument": name},
            )
        table = pa.Table.from_pandas(data, preserve_index=False)
    if table.num_rows == 0:
        raise UsageError(f"{name} has no rows", details={"argument": name})
    return table


def _pick_columns(ref: pa.Table, tgt: pa.Table, columns: list[str] | None) -> list[str]:
    if columns is None:
        names = list(ref.column_names)
    elif isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise UsageError(
            f"columns must be a list of column names, got {columns!r}",
            details={"argument": "columns"},
        )
    else:
        names = list(columns)
    if not names:
        raise UsageError(
            "columns is empty; name at least one feature", details={"argument": "columns"}
        )
    for table, which in ((ref, "reference"), (tgt, "target")):
        missing = [c for c in names if c not in table.column_names]
        if missing:
            raise UsageError(
                f"{which} has no column {missing[0]!r} (of columns {names}); "
                f"it has {table.column_names}",
                details={"argument": "columns", "missing": missing, "table": which},
            )
    return names


def _check_clip(clip: object) -> tuple[float, float] | None:
    if clip is None:
        return None
    ok = (
        isinstance(clip, tuple | list)
        and len(clip) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in clip)
    )
    if ok:
        lo, hi = float(clip[0]), float(clip[1])  # type: ignore[index]
        if 0.0 < lo < hi:
            return lo, hi
    raise UsageError(
        f"clip must be (low, high) with 0 < low < high, or None, got {clip!r}",
        details={"argument": "clip", "value": repr(clip)},
    )


def _classifier(classifier: Any, seed: int | None) -> Any:
    if classifier is None or classifier == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000)
    if isinstance(classifier, str):
        if classifier != "lightgbm":
            raise UsageError(
                f"classifier must be None, 'logistic', 'lightgbm' or a scikit-learn classifier, "
                f"got {classifier!r}",
                details={"argument": "classifier", "value": classifier},
            )
        from lightgbm import LGBMClassifier

        # Shallow, slow-learning and subsampled: a domain classifier should find the shift, not
        # memorize rows, or the weights inherit its noise.
        return LGBMClassifier(
            n_estimators=200,
            learning_rate=0.05,
            num_leaves=15,
            min_child_samples=50,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            reg_lambda=1.0,
            random_state=seed,
            verbose=-1,
        )
    if not (hasattr(classifier, "fit") and hasattr(classifier, "predict_proba")):
        raise UsageError(
            f"classifier must have fit and predict_proba (a scikit-learn classifier), got "
            f"{type(classifier).__name__}",
            details={"argument": "classifier"},
        )
    from sklearn.base import clone

    return clone(classifier)


def _features(ref: pa.Table, tgt: pa.Table, names: list[str]) -> tuple[Any, list[str], list[str]]:
    """Reference rows then target rows as a DataFrame: numeric columns float64 with NaN for
    null, categorical columns str with nulls as their own category."""
    import pandas as pd

    data: dict[str, Any] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    for name in names:
        kinds = {_kind(t.schema.field(name).type, name) for t in (ref, tgt)}
        if len(kinds) > 1:
            raise UsageError(
                f"column {name!r} is {ref.schema.field(name).type} in reference but "
                f"{tgt.schema.field(name).type} in target; cast one to match",
                details={"argument": "columns", "column": name},
            )
        parts = [ref.column(name), tgt.column(name)]
        if kinds == {"numeric"}:
            cast = [pc.cast(c, pa.float64()).to_numpy() for c in parts]
            data[name] = np.concatenate(cast)
            numeric.append(name)
        else:
            cast = [
                pc.fill_null(pc.cast(_decode(c), pa.string()), _NULL).to_numpy(zero_copy_only=False)
                for c in parts
            ]
            data[name] = np.concatenate(cast).astype(object)
            categorical.append(name)
    return pd.DataFrame(data), numeric, categorical


def _decode(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return pa.chunked_array(
            [c.dictionary_decode() for c in column.chunks], type=column.type.value_type
        )
    return column


def _kind(t: pa.DataType, name: str) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return "numeric"
    if pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return "categorical"
    if pa.types.is_null(t):
        return "categorical"
    if pa.types.is_temporal(t):
        raise UsageError(
            f"column {name!r} is {t}: time tells the two sets apart perfectly, so the weights "
            "would be meaningless; leave it out with columns=[...]",
            details={"argument": "columns", "column": name, "type": str(t)},
        )
    raise UsageError(
        f"column {name!r} has type {t}, which is neither numeric nor categorical; leave it out "
        "with columns=[...] or convert it",
        details={"argument": "columns", "column": name, "type": str(t)},
    )


def _pipeline(model: Any, numeric: list[str], categorical: list[str]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    encode = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                ),
                numeric,
            ),
            (
                "categorical",
                OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=64),
                categorical,
            ),
        ]
    )
    return Pipeline([("encode", encode), ("classify", model)])
