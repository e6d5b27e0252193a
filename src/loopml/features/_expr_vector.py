"""The vectorized evaluator: a checked tree run over whole Arrow columns by Arrow compute and numpy.

Each operation is one kernel over arrays; no kernel loops over rows in Python. ``hash_bucket`` and
``lower``/``upper`` of non-ASCII text work on the distinct values only, and time-zone offsets come
from a table of the zone's transitions (built once per zone and year from ``zoneinfo``, the same
source the row evaluator asks) rather than from Arrow's time-zone database, which stops applying
daylight-saving rules after 2037. Timestamps and durations travel as int64 microseconds inside.
Each kernel mirrors the scalar function of the same name in ``_expr_row``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.errors import ExpressionError
from loopml.features._expr import Node, arrow_type
from loopml.features._expr_row import (
    DATE_MAX_US,
    DATE_MIN_US,
    DAY_US,
    FLOAT_INT_MAX,
    FLOAT_INT_MIN,
    FLOAT_PATTERN,
    FNV_OFFSET,
    FNV_PRIME,
    INT64_MIN,
    INT_PATTERN,
    civil,
    days_from_civil,
    utc_offset_us,
)

Value: TypeAlias = Any  # a pa.Array, or a pa.Scalar for a literal operand
Kernel = Callable[..., Value]

_INTERNAL: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.int64(),
    "duration": pa.int64(),
}
_NULL_FLOAT = pa.scalar(None, pa.float64())
_NAN = pa.scalar(float("nan"), pa.float64())


def evaluate(
    tree: Node,
    columns: Mapping[str, Any],
    n_rows: int,
    types: Mapping[str, str],
    text: str,
) -> pa.Array:
    """``tree`` over the given columns, as an Arrow array of ``n_rows`` values."""
    env = {name: _prepare(name, columns, types[name], n_rows, text) for name in tree.columns()}
    out = _eval(tree, env, n_rows)
    if isinstance(out, pa.Scalar):
        out = pa.array([out.as_py()], _INTERNAL[tree.type]).take(np.zeros(n_rows, dtype=np.int64))
    if tree.type in ("timestamp", "duration"):
        out = out.view(arrow_type(tree.type))  # type: ignore[arg-type]
    return out


def _eval(node: Node, env: Mapping[str, pa.Array], n: int) -> Value:
    if node.op == "lit":
        return pa.scalar(node.value, _INTERNAL[node.type])
    if node.op == "col":
        return env[node.value]
    if node.op == "hash_bucket":
        return _hash_bucket(node, env, n)
    return KERNELS[node.op](node, n, *(_eval(a, env, n) for a in node.args))


def _prepare(name: str, columns: Mapping[str, Any], t: str, n: int, text: str) -> pa.Array:
    """A column in its internal form: int64, float64, bool, string, or int64 microseconds."""

    def fail(message: str) -> ExpressionError:
        return ExpressionError(message, details={"expression": text, "column": name})

    if name not in columns:
        raise fail(f"column '{name}' is missing from the input of expression {text!r}")
    col = columns[name]
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    elif not isinstance(col, pa.Array):
        col = pa.array(col)
    if len(col) != n:
        raise fail(f"column '{name}' has {len(col)} values, expected {n}")
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    at = col.type
    if pa.types.is_null(at):
        return pa.nulls(n, _INTERNAL[t])
    ok = {
        "int": pa.types.is_integer(at),
        "float": pa.types.is_integer(at) or pa.types.is_floating(at) or pa.types.is_decimal(at),
        "bool": pa.types.is_boolean(at),
        "string": pa.types.is_string(at) or pa.types.is_large_string(at),
        "timestamp": pa.types.is_timestamp(at) or pa.types.is_date(at) or pa.types.is_integer(at),
        "duration": pa.types.is_duration(at) or pa.types.is_integer(at),
    }[t]
    if not ok:
        raise fail(f"column '{name}' is declared {t} but its data is {at}")
    try:
        if t == "timestamp" and not pa.types.is_integer(at):
            col = pc.cast(col, pa.timestamp("us", tz="UTC"), safe=False)
        elif t == "duration" and not pa.types.is_integer(at):
            col = pc.cast(col, pa.duration("us"), safe=False)
        return pc.cast(col, _INTERNAL[t], safe=t != "float")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise fail(f"column '{name}' cannot be read as {t}: {exc}") from None


# --- numpy bridging ----------------------------------------------------------------------------


def _np(x: Value, dtype: type) -> tuple[Any, np.ndarray | None]:
    """Values (nulls filled) and validity mask (None when all valid) of ``x``."""
    if isinstance(x, pa.Scalar):
        return np.asarray(x.as_py(), dtype=dtype), None
    if x.null_count:
        filled = pc.fill_null(x, False if dtype is np.bool_ else 0)
        return filled.to_numpy(zero_copy_only=False), x.is_valid().to_numpy(zero_copy_only=False)
    return x.to_numpy(zero_copy_only=False), None


def _valid(*masks: np.ndarray | None) -> np.ndarray | None:
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out


def _arrow(values: np.ndarray, valid: np.ndarray | None, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type=type_, mask=None if valid is None else ~valid)


# --- kernels -----------------------------------------------------------------------------------


def _checked(arrow_fn: Kernel, np_fn: Any, overflow: Callable[..., np.ndarray]) -> Kernel:
    """Int64 arithmetic whose overflow gives null; Arrow's checked kernel is the fast path."""

    def kernel(node: Node, n: int, a: Value, b: Value) -> Value:
        try:
            return arrow_fn(a, b)
        except pa.ArrowInvalid:
            pass
        av, am = _np(a, np.int64)
        bv, bm = _np(b, np.int64)
        with np.errstate(all="ignore"):
            r = np_fn(av, bv)
            bad = overflow(np.broadcast_to(av, r.shape), np.broadcast_to(bv, r.shape), r)
        return _arrow(r, _valid(am, bm, ~bad), pa.int64())

    return kernel


def _add_overflow(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    return ((a ^ r) & (b ^ r)) < 0


def _sub_overflow(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    return ((a ^ b) & (a ^ r)) < 0


def _mul_overflow(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    nonzero = a != 0
    q = np.floor_divide(r, np.where(nonzero, a, 1))
    return nonzero & ((q != b) | ((a == -1) & (b == INT64_MIN)))


def _unary_checked(arrow_fn: Kernel, np_fn: Any) -> Kernel:
    """Negation or abs of int64, null for the one value whose result does not fit."""

    def kernel(node: Node, n: int, a: Value) -> Value:
        try:
            return arrow_fn(a)
        except pa.ArrowInvalid:
            av, am = _np(a, np.int64)
            with np.errstate(all="ignore"):
                return _arrow(np_fn(av), _valid(am, av != INT64_MIN), pa.int64())

    return kernel


def _div(node: Node, n: int, a: Value, b: Value) -> Value:
    if isinstance(b, pa.Scalar):
        return pa.nulls(n, pa.float64()) if b.as_py() == 0 else pc.divide(a, b)
    return pc.divide(a, pc.if_else(pc.equal(b, 0.0), _NULL_FLOAT, b))


def _floor_divide_or_mod(node: Node, n: int, a: Value, b: Value) -> Value:
    is_int = node.type == "int"
    dtype = np.int64 if is_int else np.float64
    av, am = _np(a, dtype)
    bv, bm = _np(b, dtype)
    zero = bv == 0
    safe = np.where(zero, dtype(1), bv)
    with np.errstate(all="ignore"):
        divide = np.floor_divide if node.op.startswith("floordiv") else np.remainder
        r = divide(av, safe)
    valid = _valid(am, bm, np.broadcast_to(~zero, np.shape(r)))
    if node.op == "floordiv_i":  # INT64_MIN // -1 does not fit
        valid = _valid(valid, ~((av == INT64_MIN) & (bv == -1)))
    return _arrow(np.asarray(r), valid, _INTERNAL[node.type])


def _in(node: Node, n: int, x: pa.Array) -> Value:
    if pa.types.is_floating(x.type):
        x = pc.add(x, 0.0)  # -0.0 is a member wherever 0.0 is
    found = pc.is_in(x, value_set=pa.array(sorted(node.value), x.type))
    if x.null_count:
        found = pc.if_else(pc.is_valid(x), found, pa.scalar(None, pa.bool_()))
    return found


def _round(node: Node, n: int, x: Value) -> Value:
    xv, xm = _np(x, np.float64)
    digits = node.value
    scale = 10.0 ** abs(digits)
    with np.errstate(all="ignore"):  # overflow to inf is the answer, as in the row evaluator
        if digits > 0:
            r = np.rint(xv * scale) / scale
        elif digits < 0:
            r = np.rint(xv / scale) * scale
        else:
            r = np.rint(xv)
    return _arrow(r, xm, pa.float64())


def _outside(test: Kernel, bound: float, fn: Kernel) -> Kernel:
    """``fn(x)``, null where ``test(x, bound)`` (outside the function's domain)."""

    def kernel(node: Node, n: int, x: Value) -> Value:
        outside = test(x, bound)
        if not pc.any(outside).as_py():
            return fn(x)
        return pc.if_else(outside, _NULL_FLOAT, fn(x))

    return kernel


def _greatest(node: Node, n: int, a: Value, b: Value) -> Value:
    # Row: a if a > b else (b if a <= b else NaN). With a literal that is not NaN on either side,
    # one comparison decides, a NaN column value included.
    if _not_nan(b):
        return pc.if_else(pc.less_equal(a, b), b, a)
    if _not_nan(a) or node.type != "float":
        return pc.if_else(pc.greater(a, b), a, b)
    return pc.if_else(pc.greater(a, b), a, pc.if_else(pc.less_equal(a, b), b, _NAN))


def _least(node: Node, n: int, a: Value, b: Value) -> Value:
    # Row: a if a < b else (b if a >= b else NaN).
    if _not_nan(b):
        return pc.if_else(pc.greater_equal(a, b), b, a)
    if _not_nan(a) or node.type != "float":
        return pc.if_else(pc.less(a, b), a, b)
    return pc.if_else(pc.less(a, b), a, pc.if_else(pc.greater_equal(a, b), b, _NAN))


def _not_nan(x: Value) -> bool:
    """Whether ``x`` is a literal other than NaN (folding ``inf - inf`` can make a NaN one)."""
    if not isinstance(x, pa.Scalar):
        return False
    v = x.as_py()
    return bool(v == v)


def count_le(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many of the sorted ``edges`` are <= each value (bisect_right; NaN passes them all)."""
    if len(edges) > 16:
        return np.searchsorted(edges, values, side="right").astype(np.int64)
    above = np.zeros(np.shape(values), dtype=np.int8)
    for e in edges:  # counting the edges above a value lets NaN (never < e) pass them all
        np.add(above, np.less(values, e), out=above, casting="unsafe")
    out = np.full(np.shape(values), len(edges), dtype=np.int64)
    out -= above
    return out


def _bucketize(node: Node, n: int, x: Value) -> Value:
    dtype = np.float64 if isinstance(node.value[0], float) else np.int64
    xv, xm = _np(x, dtype)
    with np.errstate(invalid="ignore"):
        r = count_le(np.asarray(node.value, dtype=dtype), xv)
    return _arrow(r, xm, pa.int64())


def fnv1a64_array(strings: pa.Array) -> np.ndarray:
    """FNV-1a (64 bits) of each string's UTF-8 bytes, computed one byte position at a time."""
    strings = strings.cast(pa.string())
    count = len(strings)
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    buffers = strings.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[strings.offset : strings.offset + count + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] else np.zeros(1, np.uint8)
    lengths = np.diff(offsets)
    starts = offsets[:-1].astype(np.int64)
    shortest, longest = int(lengths.min()), int(lengths.max())
    h = np.full(count, FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(FNV_PRIME)
    for j in range(shortest):  # every string still has a byte here
        h ^= data[starts + j]
        h *= prime
    if longest > shortest:
        # Longest first, so that the strings with a byte at position j are a prefix.
        spread = longest - lengths
        key = spread.astype(np.uint16) if longest - shortest < 2**16 else spread
        order = np.argsort(key, kind="stable")
        hs, st = h[order], starts[order]
        still = np.searchsorted(spread[order], longest - np.arange(shortest, longest), side="left")
        for j in range(shortest, longest):
            k = int(still[j - shortest])
            head = hs[:k]
            head ^= data[st[:k] + j]
            head *= prime
        h[order] = hs
    return h


def _hash_bucket(node: Node, env: Mapping[str, pa.Array], n: int) -> Value:
    """FNV-1a of each value's string form, modulo the number of buckets, once per distinct value.

    Values other than strings are made distinct before they are written as strings.
    """
    child = node.args[0]
    if child.op.startswith("string_of_"):
        encoded = pc.dictionary_encode(_eval(child.args[0], env, n))
        strings = KERNELS[child.op](child, len(encoded.dictionary), encoded.dictionary)
    else:
        encoded = pc.dictionary_encode(_eval(child, env, n))
        strings = encoded.dictionary
    table = (fnv1a64_array(strings) % np.uint64(node.value)).astype(np.int64)
    return pc.take(pa.array(table), encoded.indices)


def _case(node: Node, n: int, s: pa.Array) -> Value:
    if pc.all(pc.string_is_ascii(s)).as_py() is not False:
        return pc.ascii_lower(s) if node.op == "lower" else pc.ascii_upper(s)
    # Python's full case mapping ('ß'.upper() == 'SS') over the distinct values.
    encoded = pc.dictionary_encode(s)
    method = str.lower if node.op == "lower" else str.upper
    mapped = pa.array([method(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(mapped, encoded.indices)


def _parse(pattern: str, to: pa.DataType, kernel_extra: Callable[..., Any] | None = None) -> Kernel:
    """Strings matching ``pattern`` cast to ``to``; anything else (and overflow) is null."""

    def kernel(node: Node, n: int, s: pa.Array) -> Value:
        ok = pc.match_substring_regex(s, f"^{pattern}$")
        if kernel_extra is not None:
            ok = pc.and_(ok, kernel_extra(s))
        kept = pc.if_else(ok, s, pa.scalar(None, pa.string()))
        return pc.cast(pc.replace_substring_regex(kept, r"^\+", ""), to)

    return kernel


def _int64_fits(s: pa.Array) -> pa.Array:
    digits = pc.replace_substring_regex(s, r"^[+-]?0*", "")
    size = pc.binary_length(digits)
    top = pc.or_(
        pc.less_equal(digits, "9223372036854775807"),
        pc.and_(pc.starts_with(s, "-"), pc.equal(digits, "9223372036854775808")),
    )
    return pc.or_(pc.less(size, 19), pc.and_(pc.equal(size, 19), top))


def _int_of_float(node: Node, n: int, x: Value) -> Value:
    xv, xm = _np(x, np.float64)
    with np.errstate(invalid="ignore"):
        fits = (xv >= FLOAT_INT_MIN) & (xv < FLOAT_INT_MAX)
    r = np.trunc(np.where(fits, xv, 0.0)).astype(np.int64)
    return _arrow(r, _valid(xm, fits), pa.int64())


def _date_part(node: Node, n: int, ts: pa.Array) -> Value:
    ts = _local(ts, node.value)
    naive = ts.view(pa.timestamp("us"))
    fn = {
        "year": pc.year,
        "month": pc.month,
        "day": pc.day,
        "hour": pc.hour,
        "minute": pc.minute,
        "day_of_week": pc.day_of_week,
        "day_of_year": pc.day_of_year,
    }[node.op]
    return pc.cast(fn(naive), pa.int64())


def _local(ts: pa.Array, zone: str | None) -> pa.Array:
    """UTC microseconds shifted to the wall clock of ``zone`` (None: UTC), null outside the
    range that date parts are defined on."""
    lo, hi = (v.as_py() for v in pc.min_max(ts).values())
    if lo is None:
        return pa.nulls(len(ts), pa.int64())
    within = lo >= DATE_MIN_US and hi < DATE_MAX_US
    if zone is None and within:
        return ts
    tv, valid = _np(ts, np.int64)
    if not within:
        valid = _valid(valid, (tv >= DATE_MIN_US) & (tv < DATE_MAX_US))
        inside = tv[valid]
        if inside.size == 0:
            return pa.nulls(len(ts), pa.int64())
        lo, hi = int(inside.min()), int(inside.max())
    if zone is None:
        return _arrow(tv, valid, pa.int64())
    years: Sequence[int] = range(civil(lo // DAY_US)[0], civil(hi // DAY_US)[0] + 1)
    if len(years) > 50:  # stray dates far apart: build tables only for the years with data
        inside = pa.array(tv if valid is None else tv[valid]).view(pa.timestamp("us"))
        years = np.unique(pc.year(inside).to_numpy()).tolist()
    tables = [_zone_year(zone, y) for y in years]
    times = np.concatenate([t for t, _ in tables])
    offsets = np.concatenate([o for _, o in tables])
    # Rows before the first instant are null rows (index -1 is harmless there).
    return _arrow(tv + offsets[count_le(times, tv) - 1], valid, pa.int64())


@lru_cache(maxsize=4096)
def _zone_year(zone_name: str, year: int) -> tuple[np.ndarray, np.ndarray]:
    """(instants, offsets): the zone's UTC offset from each instant on, over one year.

    The offset is sampled daily (and just before the year ends); where two samples differ the
    change is found to the microsecond by bisection.
    """
    zone = ZoneInfo(zone_name)
    start = max(days_from_civil(year, 1, 1) * DAY_US, DATE_MIN_US)
    stop = min(days_from_civil(year + 1, 1, 1) * DAY_US, DATE_MAX_US)
    probes = [*range(start, stop, DAY_US), stop - 1]
    times, offsets = [start], [utc_offset_us(zone, start)]
    before, current = start, offsets[0]
    for t in probes[1:]:
        now = utc_offset_us(zone, t)
        while now != current:  # bisect to the first instant after `before` off `current`
            lo, hi = before, t
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if utc_offset_us(zone, mid) == current:
                    lo = mid
                else:
                    hi = mid
            current = utc_offset_us(zone, hi)
            times.append(hi)
            offsets.append(current)
            before = hi
        before = t
    return np.asarray(times, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def _dur_from_float(node: Node, n: int, x: Value) -> Value:
    xv, xm = _np(x, np.float64)
    with np.errstate(all="ignore"):
        y = xv * float(node.value)
        fits = (y >= FLOAT_INT_MIN) & (y < FLOAT_INT_MAX)
    r = np.rint(np.where(fits, y, 0.0)).astype(np.int64)
    return _arrow(r, _valid(xm, fits), pa.int64())


_MUL = _checked(pc.multiply_checked, np.multiply, _mul_overflow)


def _simple(fn: Callable[..., Value]) -> Kernel:
    def kernel(node: Node, n: int, *args: Value) -> Value:
        return fn(*args)

    return kernel


KERNELS: dict[str, Kernel] = {
    "neg_i": _unary_checked(pc.negate_checked, np.negative),
    "neg_f": _simple(pc.negate),
    "not": _simple(pc.invert),
    "and": _simple(pc.and_kleene),
    "or": _simple(pc.or_kleene),
    "add_i": _checked(pc.add_checked, np.add, _add_overflow),
    "sub_i": _checked(pc.subtract_checked, np.subtract, _sub_overflow),
    "mul_i": _MUL,
    "add_f": _simple(pc.add),
    "sub_f": _simple(pc.subtract),
    "mul_f": _simple(pc.multiply),
    "concat": _simple(lambda a, b: pc.binary_join_element_wise(a, b, "")),
    "div": _div,
    "floordiv_i": _floor_divide_or_mod,
    "floordiv_f": _floor_divide_or_mod,
    "mod_i": _floor_divide_or_mod,
    "mod_f": _floor_divide_or_mod,
    "eq": _simple(pc.equal),
    "ne": _simple(pc.not_equal),
    "lt": _simple(pc.less),
    "le": _simple(pc.less_equal),
    "gt": _simple(pc.greater),
    "ge": _simple(pc.greater_equal),
    "in": _in,
    "if": _simple(lambda c, a, b: pc.if_else(pc.fill_null(c, False), a, b)),
    "coalesce": _simple(pc.coalesce),
    "is_null": _simple(pc.is_null),
    "abs_i": _unary_checked(pc.abs_checked, np.abs),
    "abs_f": _simple(pc.abs),
    "floor": _simple(pc.floor),
    "ceil": _simple(pc.ceil),
    "round": _round,
    "sqrt": _outside(pc.less, 0.0, pc.sqrt),
    "exp": _simple(pc.exp),
    "log": _outside(pc.less_equal, 0.0, pc.ln),
    "log1p": _outside(pc.less_equal, -1.0, pc.log1p),
    "greatest": _greatest,
    "least": _least,
    "bucketize": _bucketize,
    "cross": _simple(lambda *parts: pc.binary_join_element_wise(*parts, "|")),
    "lower": _case,
    "upper": _case,
    "length": _simple(lambda s: pc.cast(pc.utf8_length(s), pa.int64())),
    "float_of_int": _simple(lambda x: pc.cast(x, pa.float64(), safe=False)),
    "float_of_bool": _simple(lambda x: pc.cast(x, pa.float64())),
    "float_of_string": _parse(FLOAT_PATTERN, pa.float64()),
    "int_of_float": _int_of_float,
    "int_of_bool": _simple(lambda x: pc.cast(x, pa.int64())),
    "int_of_string": _parse(INT_PATTERN, pa.int64(), _int64_fits),
    "string_of_int": _simple(lambda x: pc.cast(x, pa.string())),
    "string_of_bool": _simple(lambda x: pc.cast(x, pa.string())),
    "string_of_float": _simple(lambda x: pc.cast(x, pa.string())),
    "retype": _simple(lambda x: x),
    "dur_from_int": lambda node, n, x: _MUL(node, n, x, pa.scalar(node.value, pa.int64())),
    "dur_from_float": _dur_from_float,
    "dur_to_float": lambda node, n, x: pc.divide(pc.cast(x, pa.float64(), safe=False), node.value),
    **dict.fromkeys(
        ("year", "month", "day", "hour", "minute", "day_of_week", "day_of_year"), _date_part
    ),
}
