"""Slice-based evaluation: the metric on each slice of the data, and the slices that fare worst."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError
from loopml.evaluation._args import (
    IntArray,
    as_codes,
    as_labels,
    check_columns,
    check_int,
    check_length,
    is_categorical,
    is_numeric,
    numeric_values,
    to_numpy,
)
from loopml.evaluation._metrics import higher_is_better, metrics

NULL = "null"
OTHER = "(other)"


def slice_metrics(
    task: str,
    table: pa.Table,
    y_true: Any,
    y_pred: Any,
    *,
    columns: Sequence[str],
    metric: str,
    numeric_bins: int = 4,
    min_rows: int = 50,
    threshold: float = 0.5,
    classes: Sequence[Any] | None = None,
    groups: Any = None,
    k: int = 10,
) -> list[dict[str, Any]]:
    """``metric`` (a key of :func:`metrics`) on every slice of each column in ``columns``.

    ``y_true``, ``y_pred`` (and ``groups`` for ranking) hold one entry per row of ``table``.

    * String, bool and dictionary columns are sliced by value, largest slice first; values with
      fewer than ``min_rows`` rows are pooled into one ``"(other)"`` slice.
    * Numeric columns with at most ``numeric_bins`` distinct values are sliced by value (in
      increasing order); others into ``numeric_bins`` quantile buckets with edges from the data
      (numpy's linear quantiles, equal edges merged), labelled ``"[12.5, 30)"`` and the last one
      closed, ``"[30, 95]"``. NaN counts as null.
    * Nulls are a slice of their own, ``"null"``, listed last.

    Each record has ``column``, ``slice`` (the label), ``rows``, ``metric`` (the name), the value
    under the metric's own name (``record["roc_auc"]``) and ``gap``: how much worse the slice is
    than all rows together, positive when worse whichever way the metric points (``overall -
    slice`` for AUC, ``slice - overall`` for log loss). Slices with fewer than ``min_rows`` rows,
    or where the metric is undefined (one class for an AUC), have NaN value and gap.

    >>> table = pa.table({"city": ["a"] * 4 + ["b"] * 4})
    >>> rows = slice_metrics("regression", table, [1.0] * 8, [1.0] * 4 + [3.0] * 4,
    ...                      columns=["city"], metric="mae", min_rows=2)
    >>> [(r["slice"], r["mae"], r["gap"]) for r in rows]
    [('a', 0.0, -1.0), ('b', 2.0, 1.0)]
    """
    if not isinstance(table, pa.Table):
        raise UsageError(
            f"table must be a pyarrow Table, got {type(table).__name__}",
            details={"argument": "table"},
        )
    names = check_columns(table, columns)
    bins = check_int("numeric_bins", numeric_bins, minimum=1)
    smallest = check_int("min_rows", min_rows, minimum=1)
    higher = higher_is_better(metric)

    y = to_numpy(y_true, "y_true")
    pred = to_numpy(y_pred, "y_pred")
    check_length("y_true", y, table.num_rows)
    check_length("y_pred", pred, table.num_rows)
    group_arr = None if groups is None else as_labels(groups, "groups")
    if group_arr is not None:
        check_length("groups", group_arr, table.num_rows)
    if task == "multiclass" and classes is None:
        # Fix the columns of y_pred once, so that slices missing a class still line up.
        classes = list(as_codes(as_labels(y, "y_true"), "y_true")[1])
    options: dict[str, Any] = {"threshold": threshold, "classes": classes, "k": k}
    overall_all = metrics(task, y, pred, groups=group_arr, **options)
    if metric not in overall_all:
        raise UsageError(
            f"metric {metric!r} is not a metric of task {task!r}; use one of {sorted(overall_all)}",
            details={"argument": "metric", "value": metric},
        )
    overall = overall_all[metric]

    out: list[dict[str, Any]] = []
    for name in names:
        labels, codes = slice_codes(table[name], name, bins, smallest)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
        for i, label in enumerate(labels):
            idx = order[bounds[i] : bounds[i + 1]]
            value = math.nan
            if len(idx) >= smallest:
                sub_groups = None if group_arr is None else group_arr[idx]
                value = metrics(task, y[idx], pred[idx], groups=sub_groups, **options)[metric]
            gap = (overall - value) if higher else (value - overall)
            out.append(
                {
                    "column": name,
                    "slice": label,
                    "rows": len(idx),
                    "metric": metric,
                    metric: value,
                    "gap": gap,
                }
            )
    return out


def worst_slices(slices: Sequence[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` slices with the largest ``gap`` (the most worse than overall), largest first;
    slices with a NaN gap are left out, ties go to the larger slice.

    >>> worst_slices([{"slice": "a", "gap": 0.1, "rows": 9}, {"slice": "b", "gap": 0.3, "rows": 5},
    ...               {"slice": "c", "gap": float("nan"), "rows": 2}], n=5)[0]["slice"]
    'b'
    """
    count = check_int("n", n)
    scored = [s for s in slices if not math.isnan(float(s["gap"]))]
    scored.sort(key=lambda s: (-float(s["gap"]), -int(s["rows"])))
    return scored[:count]


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"


def slice_codes(
    column: pa.ChunkedArray, name: str, bins: int, min_rows: int
) -> tuple[list[str], IntArray]:
    """The slice labels of a column and the slice index of each row."""
    typ = column.type
    if is_categorical(typ):
        return _value_slices(column.combine_chunks(), min_rows)
    if is_numeric(typ):
        return _numeric_slices(column, bins)
    raise UsageError(
        f"column {name!r} has type {typ}; slices need string, bool, dictionary or numeric columns",
        details={"argument": "columns", "column": name, "type": str(typ)},
    )


def _value_slices(arr: pa.Array, min_rows: int) -> tuple[list[str], IntArray]:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    encoded = pc.dictionary_encode(arr)
    values = encoded.dictionary.to_pylist()
    raw = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    counts = np.bincount(raw[raw >= 0], minlength=len(values))
    big = counts >= min_rows
    # Largest first; equal counts by label, so the order does not depend on row order.
    labels_all = [str(v) for v in values]
    ranked = sorted(np.flatnonzero(big).tolist(), key=lambda i: (-counts[i], labels_all[i]))
    labels = [labels_all[i] for i in ranked]
    mapping = np.full(len(values), -1, dtype=np.int64)
    mapping[ranked] = np.arange(len(ranked))
    if (~big).any():
        mapping[~big] = len(labels)
        labels.append(OTHER)
    codes = np.where(raw >= 0, mapping[np.maximum(raw, 0)], -1)
    return _with_null(labels, codes)


def _numeric_slices(column: pa.ChunkedArray, bins: int) -> tuple[list[str], IntArray]:
    values, valid = numeric_values(column)
    codes = np.full(len(values), -1, dtype=np.int64)
    present = values[valid]
    distinct = np.unique(present)
    if len(distinct) <= bins:
        codes[valid] = np.searchsorted(distinct, present)
        return _with_null([_fmt(v) for v in distinct], codes)
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)))
    n_buckets = len(edges) - 1
    codes[valid] = np.clip(np.searchsorted(edges, present, side="right") - 1, 0, n_buckets - 1)
    labels = [f"[{_fmt(edges[i])}, {_fmt(edges[i + 1])})" for i in range(n_buckets)]
    labels[-1] = labels[-1][:-1] + "]"
    return _with_null(labels, codes)


def _with_null(labels: list[str], codes: IntArray) -> tuple[list[str], IntArray]:
    """Nulls (code -1) become the last slice, ``"null"``, when there are any."""
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels = [*labels, NULL]
    return labels, codes
