"""Converting a column to its schema type value by value, keeping the values that do not fit.

This is the slow path: readers first try to parse a whole column as its type, and only a column
that fails comes here. Numbers are checked with vectorized regular expressions; other types are
cast one distinct value at a time (a column has far fewer distinct values than rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data._schema import as_numpy_mask

_INT = r"^\s*[+-]?\d{1,18}\s*$"
_FLOAT = r"^\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|(?i:inf|infinity|nan))\s*$"
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
MAX_DISTINCT_SLOW = 200_000


@dataclass
class Coerced:
    """A column converted to its target type; ``bad`` marks values that did not convert (they
    are null in ``array``) and ``original`` keeps them as text for the quarantine."""

    array: pa.ChunkedArray
    bad: np.ndarray | None
    original: pa.ChunkedArray | None

    @property
    def n_bad(self) -> int:
        return 0 if self.bad is None else int(self.bad.sum())


def coerce(arr: pa.ChunkedArray, target: pa.DataType) -> Coerced:
    """Convert ``arr`` to ``target``; values that cannot be converted become null and are marked."""
    if arr.type.equals(target):
        return Coerced(arr, None, None)
    source = arr.type
    if pa.types.is_null(source):
        return Coerced(pa.chunked_array([pa.nulls(len(arr), target)]), None, None)
    if pa.types.is_string(source) or pa.types.is_large_string(source):
        return _from_string(arr, target)
    if pa.types.is_floating(source) and pa.types.is_integer(target):
        return _float_to_int(arr, target)
    try:
        return Coerced(pc.cast(arr, target), None, None)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _by_distinct_value(arr, target)


def _from_string(arr: pa.ChunkedArray, target: pa.DataType) -> Coerced:
    if pa.types.is_string(target):
        return Coerced(arr, None, None)
    if pa.types.is_integer(target):
        ok = pc.match_substring_regex(arr, _INT)
        return _cast_where(arr, ok, target, strip=True)
    if pa.types.is_floating(target):
        ok = pc.match_substring_regex(arr, _FLOAT)
        return _cast_where(arr, ok, target, strip=True)
    if pa.types.is_boolean(target):
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        is_true = pc.is_in(lowered, value_set=pa.array(_TRUE))
        is_false = pc.is_in(lowered, value_set=pa.array(_FALSE))
        ok = pc.or_(is_true, is_false)
        values = pc.if_else(ok, is_true, pa.scalar(None, pa.bool_()))
        return _result(arr, pc.cast(values, target), ok)
    try:
        return Coerced(_cast_text(arr, target), None, None)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _by_distinct_value(arr, target)


def _cast_text(arr: pa.ChunkedArray | pa.Array, target: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """Text to ``target``; timestamps written with a zone fit a zone-less column (as UTC) and
    timestamps written without one fit a zoned column (taken to be in its zone)."""
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if not pa.types.is_timestamp(target):
            raise
    if target.tz is None:
        zoned = pc.cast(arr, pa.timestamp(target.unit, tz="UTC"))
        return zoned.cast(pa.int64()).cast(target)
    naive = pc.cast(arr, pa.timestamp(target.unit))
    return pc.assume_timezone(naive, target.tz)


def _cast_where(
    arr: pa.ChunkedArray, ok: pa.ChunkedArray, target: pa.DataType, *, strip: bool
) -> Coerced:
    source = pc.utf8_trim_whitespace(arr) if strip else arr
    kept = pc.if_else(ok, source, pa.scalar(None, arr.type))
    try:
        values = pc.cast(kept, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _by_distinct_value(arr, target)
    return _result(arr, values, ok)


def _float_to_int(arr: pa.ChunkedArray, target: pa.DataType) -> Coerced:
    finite = pc.is_finite(arr)
    whole = pc.and_(finite, pc.equal(pc.floor(arr), arr))
    in_range = pc.and_(pc.greater_equal(arr, -(2.0**62)), pc.less_equal(arr, 2.0**62))
    ok = pc.and_(whole, in_range)
    kept = pc.if_else(ok, arr, pa.scalar(None, arr.type))
    return _result(arr, pc.cast(kept, target), ok)


def _result(arr: pa.ChunkedArray, values: pa.ChunkedArray, ok: pa.ChunkedArray) -> Coerced:
    # A value is bad when it was present but did not convert.
    bad = as_numpy_mask(pc.and_(pc.is_valid(arr), pc.invert(pc.fill_null(ok, False))))
    if not bad.any():
        return Coerced(_chunked(values), None, None)
    return Coerced(_chunked(values), bad, _as_text(arr))


def _by_distinct_value(arr: pa.ChunkedArray, target: pa.DataType) -> Coerced:
    """Cast each distinct value on its own; those that fail are bad."""
    combined = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    encoded = pc.dictionary_encode(combined)
    dictionary = encoded.dictionary
    if len(dictionary) > MAX_DISTINCT_SLOW:
        # Too many distinct values to try one by one: mark every value of the column.
        bad = as_numpy_mask(pc.is_valid(combined))
        return Coerced(_chunked(pa.nulls(len(combined), target)), bad, _as_text(arr))
    converted: list[object] = []
    good = np.ones(len(dictionary), dtype=bool)
    for i in range(len(dictionary)):
        try:
            converted.append(_cast_text(dictionary.slice(i, 1), target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            converted.append(None)
            good[i] = False
    new_dict = pa.array(converted, type=target)
    indices = encoded.indices
    values = pc.take(new_dict, indices)
    ok_per_row = pc.take(pa.array(good), indices)
    return _result(_chunked(combined), _chunked(values), _chunked(ok_per_row))


def fits(arr: pa.ChunkedArray, target: pa.DataType) -> float:
    """The share of non-null values of ``arr`` that convert to ``target`` (1.0 when all do)."""
    present = len(arr) - arr.null_count
    if present == 0:
        return 1.0
    return 1.0 - coerce(arr, target).n_bad / present


def _as_text(arr: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    if pa.types.is_string(arr.type):
        return _chunked(arr)
    if pa.types.is_binary(arr.type):
        return _chunked(pc.cast(arr, pa.string(), safe=False))
    return _chunked(pc.cast(arr, pa.string()))


def _chunked(arr: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def decode_utf8(arr: pa.ChunkedArray) -> Coerced:
    """Binary values as UTF-8 text; values that are not valid UTF-8 are bad (null in ``array``,
    kept as escaped text in ``original``). Valid values are not copied: the bytes are viewed as
    text once Arrow has found the invalid ones."""
    combined = arr.combine_chunks()
    text_type = pa.large_string() if pa.types.is_large_binary(combined.type) else pa.string()
    text = combined.view(text_type)
    rows = invalid_utf8(text)
    if not len(rows):
        return Coerced(_chunked(text), None, None)
    bad = np.zeros(len(combined), dtype=bool)
    bad[rows] = True
    mask = pa.array(bad)
    values = pc.if_else(mask, pa.scalar(None, text_type), text)
    escaped = [combined[int(i)].as_py().decode("utf-8", "backslashreplace") for i in rows]
    original = pc.replace_with_mask(values, mask, pa.array(escaped, type=text_type))
    return Coerced(_chunked(values), bad, _chunked(original))


def invalid_utf8(text: pa.Array) -> np.ndarray:
    """The positions of the values of a string array that are not valid UTF-8, found by halving:
    Arrow validates a slice in one pass, so k bad values cost about k log n slice checks and a
    clean array costs one."""
    found: list[int] = []
    pending = [(0, len(text))]
    while pending:
        lo, hi = pending.pop()
        if hi <= lo:
            continue
        try:
            text.slice(lo, hi - lo).validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        if hi - lo == 1:
            found.append(lo)
            continue
        mid = (lo + hi) // 2
        pending += [(mid, hi), (lo, mid)]
    return np.array(sorted(found), dtype=np.int64)
