"""Behavioural tests of a model (Designing Machine Learning Systems, chapter 6): perturbation,
invariance and directional expectation tests on a sample of rows.

Each takes ``predict``, a function from a pyarrow Table to one score per row (or one row of class
probabilities), and returns a plain report with ``passed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError
from loopml.evaluation._args import (
    BoolArray,
    FloatArray,
    call_predict,
    check_columns,
    check_float,
    check_int,
)

Predict = Callable[[pa.Table], Any]


def _check_table(table: object) -> pa.Table:
    if not isinstance(table, pa.Table):
        raise UsageError(
            f"table must be a pyarrow Table, got {type(table).__name__}",
            details={"argument": "table"},
        )
    if table.num_rows == 0:
        raise UsageError(
            "table is empty; behavioural tests need rows", details={"argument": "table"}
        )
    return table


def _is_plain_numeric(typ: pa.DataType) -> bool:
    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ))


def _numeric(table: pa.Table, name: str, argument: str) -> tuple[FloatArray, BoolArray]:
    """A numeric column as float64 (NaN where null) and its null mask."""
    check_columns(table, [name], argument)
    column = table[name]
    if not _is_plain_numeric(column.type):
        raise UsageError(
            f"column {name!r} has type {column.type}; this test changes numbers and needs an "
            "integer or floating-point column",
            details={"argument": argument, "column": name, "type": str(column.type)},
        )
    arr = column.combine_chunks()
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    values = np.asarray(arr.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return values, np.asarray(nulls, dtype=bool)


def _rebuilt(values: FloatArray, nulls: BoolArray, typ: pa.DataType) -> pa.Array:
    """New values for a column of type ``typ``: floats keep their width, integers become float64
    (noise is not an integer), nulls stay null."""
    arr = pa.array(values, mask=nulls, type=pa.float64())
    return arr.cast(typ) if pa.types.is_floating(typ) else arr


def _replace(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


def _row_change(before: FloatArray, after: FloatArray) -> FloatArray:
    """Absolute change per row; for rows of class scores the largest over the classes."""
    diff = np.abs(after - before)
    return diff.max(axis=1) if diff.ndim == 2 else diff


def perturbation_test(
    predict: Predict,
    table: pa.Table,
    *,
    columns: Sequence[str] | None = None,
    scale: float = 0.01,
    seed: int | None = 0,
    tolerance: float = 0.05,
    max_share: float = 0.05,
) -> dict[str, Any]:
    """How much predictions move under small noise in the numeric inputs.

    Adds Gaussian noise with standard deviation ``scale`` times each column's own (population)
    standard deviation to every value of ``columns`` (default: every integer and floating-point
    column; integer columns become float64, nulls stay null). Reports ``mean_abs_change``,
    ``max_abs_change``, ``share_changed_over_tolerance`` (rows whose score moved by more than
    ``tolerance``; for rows of class scores the largest move) and ``decision_flip_rate``: for
    probabilities the share of rows whose decision at 0.5 flipped, for rows of class scores the
    share whose arg-max changed, None for other scores. ``passed`` when
    ``share_changed_over_tolerance <= max_share`` (5 %). An empty ``columns`` perturbs nothing
    and passes.

    >>> import pyarrow as pa
    >>> table = pa.table({"x": [float(i) for i in range(100)]})
    >>> perturbation_test(lambda t: t["x"].to_numpy() / 100, table)["passed"]
    True
    """
    table = _check_table(table)
    noise_scale = check_float("scale", scale, low=0.0)
    tol = check_float("tolerance", tolerance, low=0.0)
    share_limit = check_float("max_share", max_share, low=0.0, high=1.0)
    if columns is None:
        names = [f.name for f in table.schema if _is_plain_numeric(f.type)]
    else:
        names = check_columns(table, columns)
    rng = np.random.default_rng(None if seed is None else check_int("seed", seed))
    base = call_predict(predict, table)
    perturbed = table
    for name in names:
        values, nulls = _numeric(table, name, "columns")
        present = values[~np.isnan(values)]
        std = float(present.std()) if len(present) else 0.0
        noisy = values + rng.normal(0.0, 1.0, len(values)) * (noise_scale * std)
        perturbed = _replace(perturbed, name, _rebuilt(noisy, nulls, table[name].type))
    after = call_predict(predict, perturbed) if names else base
    if after.shape != base.shape:
        raise UsageError(
            f"predict returned shape {after.shape} for perturbed rows but {base.shape} before",
            details={"argument": "predict"},
        )
    change = _row_change(base, after)
    flip: float | None = None
    if base.ndim == 2:
        flip = float(np.mean(base.argmax(axis=1) != after.argmax(axis=1)))
    elif base.min() >= 0.0 and base.max() <= 1.0 and after.min() >= 0.0 and after.max() <= 1.0:
        flip = float(np.mean((base >= 0.5) != (after >= 0.5)))
    share = float(np.mean(change > tol))
    return {
        "columns": names,
        "rows": table.num_rows,
        "scale": noise_scale,
        "tolerance": tol,
        "mean_abs_change": float(change.mean()),
        "max_abs_change": float(change.max()),
        "share_changed_over_tolerance": share,
        "decision_flip_rate": flip,
        "passed": share <= share_limit,
    }


def _constant_column(value: Any, n: int, typ: pa.DataType) -> pa.Array:
    value_type = typ.value_type if pa.types.is_dictionary(typ) else typ
    try:
        arr = pa.repeat(pa.scalar(value, type=value_type), n)
        return arr.dictionary_encode().cast(typ) if pa.types.is_dictionary(typ) else arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError) as exc:
        raise UsageError(
            f"value {value!r} in values does not fit the column's type {typ}: {exc}",
            details={"argument": "values", "value": repr(value)},
        ) from exc


def invariance_test(
    predict: Predict,
    table: pa.Table,
    column: str,
    *,
    values: Sequence[Any] | None = None,
    tolerance: float = 1e-9,
    seed: int | None = 0,
) -> dict[str, Any]:
    """Whether predictions ignore ``column`` (for instance a protected attribute).

    By default the column is shuffled across rows (a permutation drawn with ``seed``); with
    ``values`` it is set, in turn, to each of them in every row. Reports ``max_abs_change`` and
    ``mean_abs_change`` over all rows and variants, ``share_changed`` (moved by more than
    ``tolerance``) and ``passed`` when ``max_abs_change <= tolerance``. A column with one value
    shuffles into itself, so the default test is then vacuous; pass ``values``.

    >>> import pyarrow as pa
    >>> table = pa.table({"x": [1.0, 2.0, 3.0], "sex": ["f", "m", "f"]})
    >>> invariance_test(lambda t: t["x"].to_numpy(), table, "sex")["passed"]
    True
    """
    table = _check_table(table)
    check_columns(table, [column], "column")
    tol = check_float("tolerance", tolerance, low=0.0)
    base = call_predict(predict, table)
    original = table[column]
    if values is None:
        rng = np.random.default_rng(None if seed is None else check_int("seed", seed))
        variants = [original.take(pa.array(rng.permutation(table.num_rows)))]
    else:
        if isinstance(values, str | bytes) or len(values) == 0:
            raise UsageError(
                "values must be a non-empty sequence of values for the column",
                details={"argument": "values"},
            )
        variants = [_constant_column(v, table.num_rows, original.type) for v in values]
    changes = []
    for variant in variants:
        after = call_predict(predict, _replace(table, column, variant))
        if after.shape != base.shape:
            raise UsageError(
                f"predict returned shape {after.shape} after the change but {base.shape} before",
                details={"argument": "predict"},
            )
        changes.append(_row_change(base, after))
    change = np.concatenate(changes)
    max_change = float(change.max())
    return {
        "column": column,
        "rows": table.num_rows,
        "variants": len(variants),
        "tolerance": tol,
        "max_abs_change": max_change,
        "mean_abs_change": float(change.mean()),
        "share_changed": float(np.mean(change > tol)),
        "passed": max_change <= tol,
    }


def directional_test(
    predict: Predict,
    table: pa.Table,
    column: str,
    *,
    direction: int,
    delta: float | None = None,
    tolerance: float = 1e-9,
    max_violation_rate: float = 0.0,
) -> dict[str, Any]:
    """Whether raising ``column`` moves predictions in ``direction`` (+1 up, -1 down) and never
    the other way (a directional expectation test).

    Adds ``delta`` (default: the column's population standard deviation) to every non-null value;
    integer columns stay integers when ``delta`` is a whole number, else become float64. A row
    violates the expectation when its score moves against ``direction`` by more than
    ``tolerance``; not moving at all is no violation. Rows where the column is null are left out.
    Reports ``violation_rate`` and ``violations`` (over rows with a value), ``max_violation``,
    ``mean_change`` (signed, in score units), ``share_moved`` (moved in ``direction`` by more
    than ``tolerance``) and ``passed`` when ``violation_rate <= max_violation_rate``, by default
    0: one row moving the wrong way is a counterexample.

    >>> import pyarrow as pa
    >>> table = pa.table({"price": [1.0, 2.0, 3.0]})
    >>> directional_test(lambda t: -t["price"].to_numpy(), table, "price", direction=-1)["passed"]
    True
    """
    table = _check_table(table)
    if isinstance(direction, bool) or direction not in (1, -1):
        raise UsageError(
            f"direction must be +1 (predictions go up) or -1 (down), got {direction!r}",
            details={"argument": "direction", "value": repr(direction)},
        )
    tol = check_float("tolerance", tolerance, low=0.0)
    limit = check_float("max_violation_rate", max_violation_rate, low=0.0, high=1.0)
    values, nulls = _numeric(table, column, "column")
    present = ~np.isnan(values)
    if not present.any():
        raise UsageError(
            f"column {column!r} has no values to change", details={"argument": "column"}
        )
    if delta is None:
        step = float(values[present].std())
        if step == 0.0:
            raise UsageError(
                f"column {column!r} is constant, so its standard deviation is 0; pass delta",
                details={"argument": "delta", "column": column},
            )
    else:
        step = check_float("delta", delta)
    typ = table[column].type
    new_column: pa.Array | None = None
    if pa.types.is_integer(typ) and float(step).is_integer():
        try:
            wide = table[column].combine_chunks().cast(pa.int64())
            new_column = pc.add_checked(wide, pa.scalar(int(step), pa.int64())).cast(typ)
        except (pa.ArrowInvalid, OverflowError):
            new_column = None  # out of the integer type's range: fall back to floats
    if new_column is None:
        new_column = _rebuilt(values + step, nulls, typ)
    base = call_predict(predict, table, flat=True)
    after = call_predict(predict, _replace(table, column, new_column), flat=True)
    moved = (after - base)[present] * direction
    violating = moved < -tol
    violation_rate = float(violating.mean())
    return {
        "column": column,
        "direction": int(direction),
        "delta": step,
        "rows": int(present.sum()),
        "violations": int(violating.sum()),
        "violation_rate": violation_rate,
        "max_violation": float(max(0.0, -float(moved.min()))),
        "mean_change": float((after - base)[present].mean()),
        "share_moved": float(np.mean(moved > tol)),
        "passed": violation_rate <= limit,
    }
