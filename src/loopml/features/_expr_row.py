"""The row evaluator: a checked tree compiled once into nested closures over one row of scalars.

Serving calls an expression once per request, so nothing here walks the tree at call time: each
operation becomes one closure that calls its operands' closures, with literal operands bound in
and null checks inlined. Values are Python scalars: int, float, bool, str or None, timestamps and
durations as int microseconds. Every function mirrors the vectorized kernel of the same name in
``_expr_vector``; the two must give identical results, which the tests check row by row.
"""

from __future__ import annotations

import math
import operator
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any
from zoneinfo import ZoneInfo

from loopml.features._expr import Node

RowFn = Callable[[Mapping[str, Any]], Any]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Floats in [FLOAT_INT_MIN, FLOAT_INT_MAX) truncate or round to an int64.
FLOAT_INT_MIN, FLOAT_INT_MAX = -9.223372036854775808e18, 9.223372036854775808e18
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Date parts are defined from 0001-01-02 up to 9999-12-31 UTC (null outside): datetime, which
# converts time zones, ends at years 1 and 9999, and Arrow's calendar at years +-32767.
DATE_MIN_US = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
DATE_MAX_US = (datetime(9999, 12, 31, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
INT_PATTERN = r"[+-]?[0-9]+"
FLOAT_PATTERN = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3
_MASK64 = 2**64 - 1
_NAN = float("nan")
_INT_RE = re.compile(INT_PATTERN)
_FLOAT_RE = re.compile(FLOAT_PATTERN)


def compile_row(node: Node) -> RowFn:
    """The closure computing ``node`` from a mapping of column name to value."""
    op = node.op
    if op in _UNARY:
        return _unary(_UNARY[op], node)
    if op in _BINARY:
        return _binary(node, *_BINARY[op])
    return _BUILDERS[op](node)


# --- scalar functions, each the twin of a vectorized kernel ------------------------------------


def float_str(x: float) -> str:
    """A float as Arrow's cast to string writes it: the shortest digits that read back as ``x``,
    in positional notation for exponents -7 < e < 10 and scientific notation otherwise.

    >>> [float_str(v) for v in (1.0, 0.1, 1e-7, 123456789.5, 1e10, -0.0)]
    ['1', '0.1', '1e-7', '123456789.5', '1e+10', '-0']
    """
    if x != x:
        return "nan"
    if x in (math.inf, -math.inf):
        return "inf" if x > 0 else "-inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    if -6 <= point - 1 < 10:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    e = point - 1
    rest = f".{digits[1:]}" if len(digits) > 1 else ""
    return f"{sign}{digits[0]}{rest}e{'+' if e >= 0 else '-'}{abs(e)}"


@lru_cache(maxsize=65536)
def fnv1a64(s: str) -> int:
    """FNV-1a, 64 bits, over the UTF-8 bytes of ``s``.

    >>> hex(fnv1a64("a"))
    '0xaf63dc4c8601ec8c'
    """
    h = FNV_OFFSET
    for b in s.encode():
        h = ((h ^ b) * FNV_PRIME) & _MASK64
    return h


def civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number counted from 1970-01-01, proleptic Gregorian."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


def days_from_civil(year: int, month: int, day: int) -> int:
    """The day number (from 1970-01-01) of a proleptic Gregorian date."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def utc_offset_us(zone: ZoneInfo, us: int) -> int:
    """The offset from UTC, in microseconds, of ``zone`` at the instant ``us``."""
    off = (EPOCH + timedelta(microseconds=us)).astimezone(zone).utcoffset()
    assert off is not None
    return (off.days * 86_400 + off.seconds) * 1_000_000 + off.microseconds


def _neg_i(x: int) -> int | None:
    return None if x == INT64_MIN else -x


def _abs_i(x: int) -> int | None:
    return None if x == INT64_MIN else abs(x)


def _rint(x: float) -> float:
    # round() on a float rounds half to even, as numpy.rint; copysign keeps the sign of a zero.
    return math.copysign(float(round(x)), x) if x - x == 0 else x


def _floor(x: float) -> float:
    return math.copysign(float(math.floor(x)), x) if x - x == 0 else x


def _ceil(x: float) -> float:
    return math.copysign(float(math.ceil(x)), x) if x - x == 0 else x


def _sqrt(x: float) -> float | None:
    return None if x < 0 else math.sqrt(x)


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _log(x: float) -> float | None:
    return None if x <= 0 else math.log(x)


def _log1p(x: float) -> float | None:
    return None if x <= -1 else math.log1p(x)


def _int_of_float(x: float) -> int | None:
    return int(x) if FLOAT_INT_MIN <= x < FLOAT_INT_MAX else None


def _int_of_string(s: str) -> int | None:
    if _INT_RE.fullmatch(s) is None:
        return None
    digits = s.lstrip("+-").lstrip("0")
    if len(digits) > 19:  # also keeps int() away from its 4300-digit limit
        return None
    r = -int(digits or "0") if s[0] == "-" else int(digits or "0")
    return r if INT64_MIN <= r <= INT64_MAX else None


def _float_of_string(s: str) -> float | None:
    return float(s) if _FLOAT_RE.fullmatch(s) is not None else None


def _bool_str(x: bool) -> str:
    return "true" if x else "false"


def _div(x: float, y: float) -> float | None:
    return None if y == 0 else x / y


def _floordiv(x: Any, y: Any) -> Any:
    return None if y == 0 else x // y


def _floordiv_i(x: int, y: int) -> int | None:
    if y == 0:
        return None
    r = x // y
    return None if r > INT64_MAX else r


def _mod(x: Any, y: Any) -> Any:
    return None if y == 0 else x % y


def _greatest_f(x: float, y: float) -> float:
    return x if x > y else (y if x <= y else _NAN)


def _least_f(x: float, y: float) -> float:
    return x if x < y else (y if x >= y else _NAN)


_max: Callable[[Any, Any], Any] = max
_min: Callable[[Any, Any], Any] = min


def _hour(us: int) -> int:
    return us // 3_600_000_000 % 24


def _minute(us: int) -> int:
    return us // 60_000_000 % 60


def _day_of_week(us: int) -> int:
    return (us // DAY_US + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0


def _year(us: int) -> int:
    return civil(us // DAY_US)[0]


def _month(us: int) -> int:
    return civil(us // DAY_US)[1]


def _day(us: int) -> int:
    return civil(us // DAY_US)[2]


def _day_of_year(us: int) -> int:
    days = us // DAY_US
    return days - days_from_civil(civil(days)[0], 1, 1) + 1


DATE_PARTS: dict[str, Callable[[int], int]] = {
    "year": _year,
    "month": _month,
    "day": _day,
    "hour": _hour,
    "minute": _minute,
    "day_of_week": _day_of_week,
    "day_of_year": _day_of_year,
}


# --- closure builders --------------------------------------------------------------------------


def _unary(fn: Callable[[Any], Any], node: Node) -> RowFn:
    fa = compile_row(node.args[0])

    def f(v: Mapping[str, Any]) -> Any:
        x = fa(v)
        return None if x is None else fn(x)

    return f


def _binary(node: Node, fn: Callable[[Any, Any], Any], checked: bool) -> RowFn:
    """``fn(a, b)``, null if either is null; ``checked`` makes an int64 overflow null."""
    a, b = node.args
    lo, hi = INT64_MIN, INT64_MAX
    if b.op == "lit":
        fa, c = compile_row(a), b.value
        if checked:

            def f(v: Mapping[str, Any]) -> Any:
                x = fa(v)
                if x is None:
                    return None
                r = fn(x, c)
                return r if lo <= r <= hi else None

        else:

            def f(v: Mapping[str, Any]) -> Any:
                x = fa(v)
                return None if x is None else fn(x, c)

        return f
    fb = compile_row(b)
    if a.op == "lit":
        k = a.value
        if checked:

            def g(v: Mapping[str, Any]) -> Any:
                y = fb(v)
                if y is None:
                    return None
                r = fn(k, y)
                return r if lo <= r <= hi else None

        else:

            def g(v: Mapping[str, Any]) -> Any:
                y = fb(v)
                return None if y is None else fn(k, y)

        return g
    fa = compile_row(a)
    if checked:

        def h(v: Mapping[str, Any]) -> Any:
            x = fa(v)
            if x is None:
                return None
            y = fb(v)
            if y is None:
                return None
            r = fn(x, y)
            return r if lo <= r <= hi else None

    else:

        def h(v: Mapping[str, Any]) -> Any:
            x = fa(v)
            if x is None:
                return None
            y = fb(v)
            return None if y is None else fn(x, y)

    return h


def _divide(node: Node) -> RowFn:
    b = node.args[1]
    if b.op == "lit":  # a known divisor: test it for zero now rather than on every row
        if b.value == 0:
            return _constant(None)
        if node.op == "floordiv_i":  # INT64_MIN // -1 still overflows
            return _binary(node, operator.floordiv, True)
        plain = {"div": operator.truediv, "floordiv_f": operator.floordiv}
        return _binary(node, plain.get(node.op, operator.mod), False)
    fn = {"div": _div, "floordiv_i": _floordiv_i, "floordiv_f": _floordiv}.get(node.op, _mod)
    return _binary(node, fn, False)


def _constant(value: Any) -> RowFn:
    def f(v: Mapping[str, Any]) -> Any:
        return value

    return f


def _column(node: Node) -> RowFn:
    name = node.value
    if node.type != "float":
        return operator.itemgetter(name)

    def f(v: Mapping[str, Any]) -> Any:
        # An int where a float is declared (JSON writes 3.0 as 3) reads as a float.
        x = v[name]
        return float(x) if type(x) is int else x

    return f


def _and(node: Node) -> RowFn:
    fa, fb = (compile_row(a) for a in node.args)

    def f(v: Mapping[str, Any]) -> Any:
        x = fa(v)
        if x is None:
            y = fb(v)
            return False if y is not None and not y else None
        if not x:
            return False
        return fb(v)

    return f


def _or(node: Node) -> RowFn:
    fa, fb = (compile_row(a) for a in node.args)

    def f(v: Mapping[str, Any]) -> Any:
        x = fa(v)
        if x is None:
            y = fb(v)
            return True if y else None
        if x:
            return True
        return fb(v)

    return f


def _if(node: Node) -> RowFn:
    fc, fa, fb = (compile_row(a) for a in node.args)

    def f(v: Mapping[str, Any]) -> Any:
        return fa(v) if fc(v) else fb(v)

    return f


def _coalesce(node: Node) -> RowFn:
    fns = [compile_row(a) for a in node.args]
    if len(fns) == 2:
        fa, fb = fns

        def f2(v: Mapping[str, Any]) -> Any:
            x = fa(v)
            return fb(v) if x is None else x

        return f2

    def f(v: Mapping[str, Any]) -> Any:
        for fn in fns:
            x = fn(v)
            if x is not None:
                return x
        return None

    return f


def _is_null(node: Node) -> RowFn:
    fa = compile_row(node.args[0])

    def f(v: Mapping[str, Any]) -> Any:
        return fa(v) is None

    return f


def _cross(node: Node) -> RowFn:
    fns = [compile_row(a) for a in node.args]

    def f(v: Mapping[str, Any]) -> Any:
        parts = [fn(v) for fn in fns]
        return None if None in parts else "|".join(parts)

    return f


def _round(node: Node) -> RowFn:
    digits = node.value
    scale = 10.0 ** abs(digits)
    if digits == 0:
        return _unary(_rint, node)
    if digits > 0:
        return _unary(lambda x: _rint(x * scale) / scale, node)
    return _unary(lambda x: _rint(x / scale) * scale, node)


def _hash_bucket(node: Node) -> RowFn:
    n = node.value
    return _unary(lambda s: fnv1a64(s) % n, node)


def _date_part(node: Node) -> RowFn:
    part = DATE_PARTS[node.op]
    lo, hi = DATE_MIN_US, DATE_MAX_US
    if node.value is None:

        def utc(us: int) -> int | None:
            return part(us) if lo <= us < hi else None

        return _unary(utc, node)
    zone = ZoneInfo(node.value)
    # The zone's offset for each hour seen (a request path reads the same hours again and
    # again); an hour with a transition inside it is never cached, but computed per instant.
    hours: dict[int, int] = {}

    def local(us: int) -> int | None:
        if not lo <= us < hi:
            return None
        hour = us // HOUR_US
        off = hours.get(hour)
        if off is None:
            start = hour * HOUR_US
            off = utc_offset_us(zone, start)
            if utc_offset_us(zone, start + HOUR_US - 1) != off:
                return part(us + utc_offset_us(zone, us))
            if len(hours) >= 20_000:  # over two years of hours
                hours.clear()
            hours[hour] = off
        return part(us + off)

    return _unary(local, node)


def _dur_from_int(node: Node) -> RowFn:
    m = node.value

    def convert(x: int) -> int | None:
        r = x * m
        return r if INT64_MIN <= r <= INT64_MAX else None

    return _unary(convert, node)


def _dur_from_float(node: Node) -> RowFn:
    m = float(node.value)

    def convert(x: float) -> int | None:
        y = x * m
        return int(_rint(y)) if FLOAT_INT_MIN <= y < FLOAT_INT_MAX else None

    return _unary(convert, node)


def _dur_to_float(node: Node) -> RowFn:
    d = node.value
    return _unary(lambda x: float(x) / d, node)


_UNARY: dict[str, Callable[[Any], Any]] = {
    "neg_f": operator.neg,
    "neg_i": _neg_i,
    "not": operator.not_,
    "abs_f": abs,
    "abs_i": _abs_i,
    "floor": _floor,
    "ceil": _ceil,
    "sqrt": _sqrt,
    "exp": _exp,
    "log": _log,
    "log1p": _log1p,
    "lower": str.lower,
    "upper": str.upper,
    "length": len,
    "float_of_int": float,
    "float_of_bool": float,
    "float_of_string": _float_of_string,
    "int_of_float": _int_of_float,
    "int_of_bool": int,
    "int_of_string": _int_of_string,
    "string_of_int": str,
    "string_of_bool": _bool_str,
    "string_of_float": float_str,
}

_BINARY: dict[str, tuple[Callable[[Any, Any], Any], bool]] = {
    "add_i": (operator.add, True),
    "sub_i": (operator.sub, True),
    "mul_i": (operator.mul, True),
    "add_f": (operator.add, False),
    "sub_f": (operator.sub, False),
    "mul_f": (operator.mul, False),
    "concat": (operator.add, False),
    "eq": (operator.eq, False),
    "ne": (operator.ne, False),
    "lt": (operator.lt, False),
    "le": (operator.le, False),
    "gt": (operator.gt, False),
    "ge": (operator.ge, False),
}

_BUILDERS: dict[str, Callable[[Node], RowFn]] = {
    "lit": lambda n: _constant(n.value),
    "col": _column,
    "and": _and,
    "or": _or,
    "if": _if,
    "coalesce": _coalesce,
    "is_null": _is_null,
    "cross": _cross,
    "div": _divide,
    "floordiv_i": _divide,
    "floordiv_f": _divide,
    "mod_i": _divide,
    "mod_f": _divide,
    "greatest": lambda n: _binary(n, _greatest_f if n.type == "float" else _max, False),
    "least": lambda n: _binary(n, _least_f if n.type == "float" else _min, False),
    "in": lambda n: _unary(n.value.__contains__, n),
    "bucketize": lambda n: _unary(partial(bisect_right, n.value), n),
    "hash_bucket": _hash_bucket,
    "round": _round,
    "retype": lambda n: compile_row(n.args[0]),
    "dur_from_int": _dur_from_int,
    "dur_from_float": _dur_from_float,
    "dur_to_float": _dur_to_float,
    **dict.fromkeys(DATE_PARTS, _date_part),
}

OPS = frozenset(_UNARY) | frozenset(_BINARY) | frozenset(_BUILDERS)
