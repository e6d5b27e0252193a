"""Argument checks shared by the evaluation functions: every bad argument is a UsageError naming it."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import UsageError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TASKS = ("binary", "multiclass", "regression", "ranking")


def check_task(task: object) -> str:
    if task not in TASKS:
        raise UsageError(
            f"task must be one of {', '.join(TASKS)}, got {task!r}",
            details={"argument": "task", "value": repr(task)},
        )
    return str(task)


def check_int(name: str, value: object, *, minimum: int = 0) -> int:
    """``value`` as an int of at least ``minimum``; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(
            f"{name} must be an integer, got {value!r}",
            details={"argument": name, "value": repr(value)},
        )
    if int(value) < minimum:
        raise UsageError(
            f"{name} must be at least {minimum}, got {int(value)}",
            details={"argument": name, "value": int(value)},
        )
    return int(value)


def check_float(
    name: str, value: object, *, low: float | None = None, high: float | None = None
) -> float:
    """``value`` as a finite float in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UsageError(
            f"{name} must be a finite number, got {value!r}",
            details={"argument": name, "value": repr(value)},
        )
    f = float(value)
    if (low is not None and f < low) or (high is not None and f > high):
        raise UsageError(
            f"{name} must be in [{low}, {high}], got {f}",
            details={"argument": name, "value": f},
        )
    return f


def to_numpy(values: Any, name: str) -> np.ndarray:
    """``values`` (a list, numpy array, pandas Series or Arrow array) as numpy; nulls are refused."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if values.null_count:
            first = int(pc.index(pc.is_null(values), True).as_py())
            raise UsageError(
                f"{name}[{first}] is null; {name} needs a value in every row "
                f"({values.null_count} nulls)",
                details={"argument": name, "row": first, "nulls": values.null_count},
            )
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        return values.to_numpy(zero_copy_only=False)
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise UsageError(
            f"{name} must be an array with one value per row, got {type(values).__name__}",
            details={"argument": name},
        )
    try:
        return np.asarray(values)
    except ValueError as exc:  # ragged lists
        raise UsageError(f"{name} is not an array: {exc}", details={"argument": name}) from exc


def _first_bad(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])


def as_float(values: Any, name: str, *, ndim: int = 1) -> FloatArray:
    """A float64 copy of ``values`` with ``ndim`` dimensions; null, NaN and infinity are refused."""
    arr = to_numpy(values, name)
    try:
        out = np.array(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{name} must hold numbers: {exc}", details={"argument": name}) from exc
    if out.ndim != ndim:
        raise UsageError(
            f"{name} must be {ndim}-dimensional, got shape {out.shape}",
            details={"argument": name, "shape": list(out.shape)},
        )
    bad = ~np.isfinite(out)
    if bad.any():
        row = _first_bad(bad)
        raise UsageError(
            f"{name}[{row}] is null, NaN or infinite; {name} must be finite in every row "
            f"({int(bad.sum())} bad values)",
            details={"argument": name, "row": row},
        )
    return out


def as_labels(values: Any, name: str) -> np.ndarray:
    """A 1-D numpy array of labels; null (None, NaN) is refused."""
    arr = to_numpy(values, name)
    if arr.ndim != 1:
        raise UsageError(
            f"{name} must hold one label per row (one-dimensional), got shape {arr.shape}",
            details={"argument": name, "shape": list(arr.shape)},
        )
    if arr.dtype.kind == "f":
        bad = np.isnan(arr)
    elif arr.dtype.kind == "O":
        # Element-wise in C: None compares equal to None, NaN unequal to itself.
        bad = np.asarray(
            np.equal(arr, np.array(None, dtype=object)) | np.not_equal(arr, arr), dtype=bool
        )
    else:
        return arr
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UsageError(
            f"{name}[{row}] is null; {name} needs a label in every row",
            details={"argument": name, "row": row},
        )
    return arr


def as_binary(values: Any, name: str = "y_true") -> BoolArray:
    """0/1 or bool labels as a bool array; anything else is refused."""
    arr = as_labels(values, name)
    if arr.dtype == np.bool_:
        return arr
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError):
        num = None
    if num is None or not np.isin(num, (0.0, 1.0)).all():
        raise UsageError(
            f"{name} must hold binary labels (0/1 or bool) for task 'binary', "
            f"got values such as {np.unique(arr.astype(str))[:5].tolist()}",
            details={"argument": name},
        )
    return num == 1.0


def as_codes(values: np.ndarray, name: str) -> tuple[IntArray, np.ndarray]:
    """Codes 0..m-1 of ``values`` and the m distinct values (sorted)."""
    try:
        uniques, codes = np.unique(values, return_inverse=True)
    except TypeError as exc:
        raise UsageError(
            f"{name} must hold comparable labels of one type: {exc}", details={"argument": name}
        ) from exc
    return codes.astype(np.int64).reshape(-1), uniques


def encode(labels: np.ndarray, classes: np.ndarray, name: str) -> IntArray:
    """The index in ``classes`` of every label; a label outside ``classes`` is refused."""
    try:
        order = np.argsort(classes, kind="stable")
        ordered = classes[order]
        pos = np.clip(np.searchsorted(ordered, labels), 0, max(len(classes) - 1, 0))
        found = ordered[pos] == labels if len(classes) else np.zeros(len(labels), dtype=bool)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"{name} and classes hold labels of different types: {exc}",
            details={"argument": name},
        ) from exc
    found = np.asarray(found, dtype=bool)
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        raise UsageError(
            f"{name}[{row}] = {labels[row]!r} is not one of classes {classes.tolist()[:20]}; "
            "pass every class in classes",
            details={"argument": name, "row": row, "value": repr(labels[row])},
        )
    return order[pos].astype(np.int64)


def check_length(name: str, values: Any, n: int) -> None:
    if len(values) != n:
        raise UsageError(
            f"{name} has {len(values)} rows but {n} were expected (one per row of y_true or table)",
            details={"argument": name, "rows": len(values), "expected": n},
        )


def check_columns(table: pa.Table, columns: Sequence[str], name: str = "columns") -> list[str]:
    if isinstance(columns, str):
        columns = [columns]
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise UsageError(
            f"{name} names {missing} which the table does not have "
            f"(it has {table.column_names[:20]})",
            details={"argument": name, "missing": missing},
        )
    return list(columns)


def is_numeric(typ: pa.DataType) -> bool:
    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ))


def is_categorical(typ: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_boolean(typ)
        or pa.types.is_dictionary(typ)
    )


def numeric_values(column: pa.ChunkedArray | pa.Array) -> tuple[FloatArray, BoolArray]:
    """A numeric column as float64 and the mask of rows holding a value (not null, not NaN)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
    values = np.asarray(values, dtype=np.float64)
    return values, ~np.isnan(values)


def call_predict(
    predict: Callable[[pa.Table], Any], table: pa.Table, *, flat: bool = False
) -> FloatArray:
    """``predict(table)`` as a float64 array of one score (or one row of scores) per table row."""
    try:
        out = np.asarray(predict(table), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"predict must return numbers, one per row: {exc}", details={"argument": "predict"}
        ) from exc
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim not in (1, 2) or out.shape[0] != table.num_rows or (flat and out.ndim != 1):
        want = "one score per row" if flat else "one score (or one row of scores) per row"
        raise UsageError(
            f"predict returned shape {out.shape} for {table.num_rows} rows; it must return {want}",
            details={"argument": "predict", "shape": list(out.shape)},
        )
    bad = ~np.isfinite(out)
    if bad.any():
        row = _first_bad(bad)
        raise UsageError(
            f"predict returned a non-finite score for row {row}", details={"argument": "predict"}
        )
    return out
