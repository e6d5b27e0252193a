"""The expression language: every operator and function, nulls, errors, and the promise that the
vectorized and the row evaluator give the same value for every row."""

from __future__ import annotations

import math
import pickle
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import loopml.features as features
from loopml.errors import ExpressionError, LoopmlError
from loopml.features import (
    Expression,
    _expr_row,
    _expr_vector,
    arrow_type,
    compile_expression,
    expr_type_of,
    parse,
)

S = 1_000_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TRANSCENDENTAL = ("sqrt(", "exp(", "log(", "log1p(")


def us(text: str) -> int:
    """Microseconds since the epoch of an ISO time in UTC."""
    dt = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // (datetime.resolution)


def utc(*times: str | None) -> pa.Array:
    """A timestamp[us, UTC] column of ISO times (None for null)."""
    return pa.array([None if t is None else us(t) for t in times], pa.timestamp("us", tz="UTC"))


def column_values(array: pa.Array) -> list[Any]:
    """An Arrow column as the Python scalars the row evaluator takes."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        array = pc.cast(pc.cast(array, pa.timestamp("us", tz="UTC"), safe=False), pa.int64())
    elif pa.types.is_duration(array.type):
        array = pc.cast(pc.cast(array, pa.duration("us"), safe=False), pa.int64())
    return array.to_pylist()


def same(a: Any, b: Any, tolerant: bool = False) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if tolerant and a != b:
            return math.isclose(a, b, rel_tol=1e-12)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def both(expr: Expression, arrays: dict[str, pa.Array], n: int) -> list[Any]:
    """Evaluate vectorized and row by row, check they agree, and return the values."""
    out = expr.evaluate(arrays, n)
    assert out.type == arrow_type(expr.type), (out.type, expr.type)
    assert len(out) == n
    vector = column_values(out)
    columns = {k: column_values(a) for k, a in arrays.items()}
    rows = [expr.row({k: v[i] for k, v in columns.items()}) for i in range(n)]
    tolerant = any(f in expr.text for f in TRANSCENDENTAL)
    for i, (a, b) in enumerate(zip(vector, rows, strict=True)):
        assert same(a, b, tolerant), f"{expr.text!r} row {i}: vector {a!r} != row {b!r}"
    return vector


def run(text: str, n: int | None = None, **cols: Any) -> list[Any]:
    arrays = {k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in cols.items()}
    types = {k: expr_type_of(a.type) for k, a in arrays.items()}
    rows = n if n is not None else len(next(iter(arrays.values()))) if arrays else 1
    return both(compile_expression(text, types), arrays, rows)


def one(text: str, **cols: Any) -> Any:
    """The value of ``text`` on a one-row table of the given scalars."""
    arrays = {k: v if isinstance(v, pa.Array) else pa.array([v]) for k, v in cols.items()}
    return run(text, 1, **arrays)[0]


def error(text: str, types: dict[str, Any] | None = None) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, types or {})
    return info.value


# --- literals and syntax -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("-42", -42),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("2E-2", 0.02),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\"\\n"', 'say "hi"\n'),
        ("'caf\\u00e9'", "café"),
        ("true", True),
        ("false", False),
        ("-9223372036854775808", INT64_MIN),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("-2 * 3", -6),
        ("10 - 4 - 3", 3),
        ("2 * 3 % 4", 2),
        ("not false and false", False),
        ("true or false and false", True),
        ("not 1 == 2", True),
        ("1 + 1 == 2 and 3 > 2", True),
    ],
)
def test_literals_and_precedence(text: str, expected: Any) -> None:
    assert one(text) == expected
    assert compile_expression(text, {}).row({}) == expected


def test_backtick_names_and_keywords() -> None:
    assert one("`dep delay` * 2 + `and`", **{"dep delay": 3, "and": 1}) == 7
    assert one("`a\\`b` + 1", **{"a`b": 1}) == 2


def test_parse_returns_the_tree() -> None:
    tree = parse("x in ('a', 'b') and not y")
    assert tree.op == "and"
    assert [n.op for n in tree.args] == ["in", "not"]
    assert tree.columns() == {"x", "y"}


# --- arithmetic --------------------------------------------------------------------------------


def test_arithmetic_on_ints_floats_and_nulls() -> None:
    x = [7, -7, None, 0]
    f = [2.5, -0.5, 1.0, None]
    assert run("x + 1", x=x) == [8, -6, None, 1]
    assert run("x - f", x=x, f=f) == [4.5, -6.5, None, None]
    assert run("x * 3", x=x) == [21, -21, None, 0]
    assert run("x / 2", x=x) == [3.5, -3.5, None, 0.0]
    assert run("-x", x=x) == [-7, 7, None, 0]
    assert run("-f", x=x, f=f) == [-2.5, 0.5, -1.0, None]
    assert run("x + null", x=x) == [None] * 4
    assert run("'a' + s + 'c'", s=["b", None]) == ["abc", None]


def test_floor_division_and_modulo_follow_python_signs() -> None:
    a = [7, -7, 7, -7, 0]
    b = [2, 2, -2, -2, 3]
    assert run("a // b", a=a, b=b) == [7 // 2, -7 // 2, 7 // -2, -7 // -2, 0] == [3, -4, -4, 3, 0]
    assert run("a % b", a=a, b=b) == [1, 1, -1, -1, 0]
    assert run("a % 3", a=a) == [1, 2, 1, 2, 0]
    assert run("a % -3", a=a) == [-2, -1, -2, -1, 0]
    fa = [7.5, -7.5, 7.5, -7.5]
    fb = [2.0, 2.0, -2.0, -2.0]
    assert run("fa // fb", fa=fa, fb=fb) == [3.0, -4.0, -4.0, 3.0]
    assert run("fa % fb", fa=fa, fb=fb) == [1.5, 0.5, -0.5, -1.5]


def test_division_by_zero_is_null() -> None:
    a = [1, -1, 0, None]
    z = [0, 0, 0, 0]
    for text in ("a / z", "a // z", "a % z", "a / 0", "a // 0", "a % 0", "a / 0.0", "a / -0.0"):
        assert run(text, a=a, z=z) == [None] * 4, text
    assert run("f / g", f=[1.0, 1.0], g=[-0.0, 2.0]) == [None, 0.5]


def test_int_overflow_is_null() -> None:
    big = [INT64_MAX, INT64_MIN, 5]
    assert run("x + 1", x=big) == [None, INT64_MIN + 1, 6]
    assert run("x - 1", x=big) == [INT64_MAX - 1, None, 4]
    assert run("x * 2", x=big) == [None, None, 10]
    assert run("x * -1", x=big) == [-INT64_MAX, None, -5]
    assert run("-x", x=big) == [-INT64_MAX, None, -5]
    assert run("abs(x)", x=big) == [INT64_MAX, None, 5]
    assert run("x // -1", x=big) == [-INT64_MAX, None, -5]
    assert run("x // y", x=big, y=[-1, -1, -1]) == [-INT64_MAX, None, -5]
    assert run("x * y", x=[2**32, -(2**32), 3], y=[2**31, 2**31, 2**62]) == [None, INT64_MIN, None]


# --- comparisons and logic ---------------------------------------------------------------------


def test_comparisons() -> None:
    x = [1, 2, 3, None]
    f = [1.5, 2.0, float("nan"), 1.0]
    assert run("x < f", x=x, f=f) == [True, False, False, None]
    assert run("x == f", x=x, f=f) == [False, True, False, None]
    assert run("x != 2", x=x) == [True, False, True, None]
    assert run("x >= 2", x=x) == [False, True, True, None]
    assert run("s <= 'b'", s=["a", "b", "c", None]) == [True, True, False, None]
    assert run("b == true", b=[True, False, None]) == [True, False, None]
    assert run("x == null", x=x) == [None] * 4


def test_three_valued_logic() -> None:
    values = [True, False, None]
    a = [x for x in values for _ in values]
    b = [y for _ in values for y in values]
    expected_and = [True, False, None, False, False, False, None, False, None]
    expected_or = [True, True, True, True, False, None, True, None, None]
    assert run("a and b", a=pa.array(a, pa.bool_()), b=pa.array(b, pa.bool_())) == expected_and
    assert run("a or b", a=pa.array(a, pa.bool_()), b=pa.array(b, pa.bool_())) == expected_or
    assert run("not a", a=pa.array(values, pa.bool_())) == [False, True, None]
    assert run("a and null", a=pa.array(values, pa.bool_())) == [None, False, None]
    assert run("a or null", a=pa.array(values, pa.bool_())) == [True, None, None]


def test_in_and_not_in() -> None:
    s = ["UA", "AA", "DL", None]
    assert run("s in ('UA', 'AA')", s=s) == [True, True, False, None]
    assert run("s not in ['UA', 'AA']", s=s) == [False, False, True, None]
    assert run("x in (1, 2.5)", x=[1, 2, 3, None]) == [True, False, False, None]
    assert run("f in (0, 2)", f=[-0.0, 2.0, float("nan"), None]) == [True, True, False, None]
    assert run("b in (true)", b=[True, False]) == [True, False]


# --- conditionals and nulls --------------------------------------------------------------------


def test_if_coalesce_is_null() -> None:
    c = pa.array([True, False, None], pa.bool_())
    assert run("if(c, 1, 2)", c=c) == [1, 2, 2]  # a null condition takes the else branch
    assert run("if(c, 1, 2.5)", c=c) == [1.0, 2.5, 2.5]
    assert run("if(c, 'y', null)", c=c) == ["y", None, None]
    assert run("if(true, x, 1 // 0)", x=[4]) == [4]
    assert run("coalesce(x, y, 0)", x=[1, None, None], y=[5, 6, None]) == [1, 6, 0]
    assert run("coalesce(null, f, 1)", f=[None, 2.5]) == [1.0, 2.5]
    assert run("is_null(f)", f=[None, float("nan"), 1.0]) == [True, False, False]
    assert one("is_null(null)") is True


# --- numeric functions -------------------------------------------------------------------------


def test_rounding() -> None:
    f = [0.5, 1.5, 2.5, -0.5, -2.5, 2.675, float("inf"), None]
    assert run("round(f)", f=f) == [0.0, 2.0, 2.0, -0.0, -2.0, 3.0, float("inf"), None]
    assert math.copysign(1, run("round(f)", f=[-0.4])[0]) == -1  # the sign of zero survives
    assert run("round(f, 1)", f=[1.25, 1.35, -1.25]) == [1.2, 1.4, -1.2]
    assert run("round(f, -1)", f=[15.0, 25.0, -35.0]) == [20.0, 20.0, -40.0]
    assert run("floor(f)", f=[1.5, -1.5, -0.5, None]) == [1.0, -2.0, -1.0, None]
    assert run("ceil(f)", f=[1.5, -1.5, -0.5]) == [2.0, -1.0, -0.0]
    assert run("floor(x) + ceil(x) + round(x)", x=[3]) == [9]  # ints stay ints
    assert run("abs(f)", f=[-1.5, -0.0, None]) == [1.5, 0.0, None]


def test_domain_errors_give_null() -> None:
    f = [4.0, 0.0, -1.0, -2.0, None, float("inf")]
    assert run("sqrt(f)", f=f) == [2.0, 0.0, None, None, None, float("inf")]
    assert run("log(f)", f=f)[:5] == [math.log(4.0), None, None, None, None]
    assert run("log1p(f)", f=f)[:5] == [math.log1p(4.0), 0.0, None, None, None]
    assert run("exp(f)", f=[0.0, 1000.0, -1000.0]) == [1.0, float("inf"), 0.0]
    assert run("sqrt(x)", x=[9, -9]) == [3.0, None]


def test_clip_least_greatest() -> None:
    assert run("clip(x, 0, 10)", x=[-5, 5, 15, None]) == [0, 5, 10, None]
    low, mid, nan = run("clip(f, 0, 1)", f=[-0.5, 0.5, float("nan")])
    assert (low, mid, math.isnan(nan)) == (0.0, 0.5, True)
    clipped = run("clip(log1p(d) * 2, 0, 20)", d=[0, 100, 10**9])
    assert clipped == [0.0, math.log1p(100) * 2, 20.0]
    assert run("least(x, y, 3)", x=[1, 5, None], y=[2, 4, 1]) == [1, 3, None]
    assert run("greatest(x, y)", x=[1, 5], y=[2.5, 4]) == [2.5, 5.0]
    assert run("greatest(s, t)", s=["b", "a"], t=["a", "c"]) == ["b", "c"]
    assert math.isnan(run("greatest(f, g)", f=[1.0], g=[float("nan")])[0])


def test_bucketize_counts_edges_at_or_below() -> None:
    x = [-5, 0, 5, 10, 99, 100, 1000, None]
    assert run("bucketize(x, [0, 10, 100])", x=x) == [0, 1, 1, 2, 2, 3, 3, None]
    f = [0.5, 10.0, float("nan"), -1e300]
    assert run("bucketize(f, [0, 10, 100])", f=f) == [1, 2, 3, 0]  # NaN sorts last
    edges = ", ".join(str(i) for i in range(0, 100, 5))  # long lists take another path
    assert run(f"bucketize(x, [{edges}])", x=x) == [0, 1, 2, 3, 20, 20, 20, None]
    assert one("bucketize(x, [-1.5, 2])", x=2) == 2


# --- hashing and strings -----------------------------------------------------------------------


def fnv1a64_reference(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        # Fixed forever: changing them would move every hashed feature of every trained model.
        ("hash_bucket(x, 9223372036854775807)", "foobar", 0x85944171F73967E8 % (2**63 - 1)),
        ("hash_bucket(x, 1000)", "a", 996),
        ("hash_bucket(x, 10)", "", 7),
        ("hash_bucket(x, 100)", "UA", 71),
        ("hash_bucket(x, 97)", "é", 82),
        ("hash_bucket(x, 1000)", 123, 851),
        ("hash_bucket(x, 10)", -7, 7),
        ("hash_bucket(x, 2)", True, 1),
        ("hash_bucket(x, 13)", 1.5, 7),
    ],
)
def test_hash_bucket_values_are_fixed(text: str, value: Any, expected: int) -> None:
    assert one(text, x=value) == expected
    form = (
        {True: "true", False: "false"}.get(value, str(value))
        if not isinstance(value, str)
        else value
    )
    n = int(text.split(", ")[1].rstrip(")"))
    assert fnv1a64_reference(form.encode()) % n == expected
    assert hex(_expr_row.fnv1a64("a")) == "0xaf63dc4c8601ec8c"  # the published test vector


def test_hash_bucket_columns() -> None:
    s = ["UA", None, "AA", "UA", "é€𝄞" * 7, ""]
    assert run("hash_bucket(s, 10)", s=s) == [
        None if v is None else fnv1a64_reference(v.encode()) % 10 for v in s
    ]
    run("hash_bucket(x, 5)", x=[1, None, -3, 10**18])
    run("hash_bucket(f, 5)", f=[1.0, 0.1, None, float("nan")])
    dictionary = pa.array(["b", "a", None, "b"]).dictionary_encode()
    run("hash_bucket(s, 1000)", s=dictionary)


def test_cross_and_string_functions() -> None:
    assert run("cross(s, x, b, f)", s=["UA", None], x=[1, 2], b=[True, False], f=[1.5, 2.0]) == [
        "UA|1|true|1.5",
        None,
    ]
    assert run("lower(s)", s=["AbC", None, "İ"]) == ["abc", None, "i̇"]
    assert run("upper(s)", s=["straße", "abc"]) == ["STRASSE", "ABC"]
    assert run("upper(s)", s=["abc", "x"]) == ["ABC", "X"]
    assert run("length(s)", s=["héllo", "", None]) == [5, 0, None]


def test_casts() -> None:
    inf, nan = float("inf"), float("nan")
    assert run("int(f)", f=[3.9, -3.9, nan, 1e19, -9.3e18, inf]) == [3, -3, None, None, None, None]
    assert run("int(s)", s=["42", "+7", "-007", " 7", "1.5", "9223372036854775808",
                            "-9223372036854775808", ""]) == [
        42, 7, -7, None, None, None, INT64_MIN, None,
    ]  # fmt: skip
    assert run("float(s)", s=["1e3", "-.5", "2.", "abc", "1e999", "nan"]) == [
        1000.0, -0.5, 2.0, None, float("inf"), None,
    ]  # fmt: skip
    assert run("string(f)", f=[1.0, 0.1, 1e21, 1e-7, 123456789.125, -0.0, float("nan")]) == [
        "1", "0.1", "1e+21", "1e-7", "123456789.125", "-0", "nan",
    ]  # fmt: skip
    assert run("string(x) + string(b)", x=[12, -3], b=[True, False]) == ["12true", "-3false"]
    assert run("int(b) + float(b)", b=[True, False]) == [2.0, 0.0]
    assert run("float(x) / 2", x=[3]) == [1.5]


def test_float_text_matches_arrow_for_many_floats() -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**63, 20_000, dtype=np.int64).view(np.float64)
    values = [*bits, *rng.normal(0, 1e6, 5_000), *np.round(rng.normal(0, 100, 5_000), 2)]
    arrow = pc.cast(pa.array(values), pa.string()).to_pylist()
    assert [_expr_row.float_str(float(v)) for v in values] == arrow


# --- timestamps and durations ------------------------------------------------------------------


def test_date_parts_in_utc() -> None:
    t = utc("2013-01-01T05:07:00", "2016-12-31T23:59:59", None)
    assert run("year(t)", t=t) == [2013, 2016, None]
    assert run("month(t)", t=t) == [1, 12, None]
    assert run("day(t)", t=t) == [1, 31, None]
    assert run("hour(t)", t=t) == [5, 23, None]
    assert run("minute(t)", t=t) == [7, 59, None]
    assert run("day_of_week(t)", t=t) == [1, 5, None]  # a Tuesday and a Saturday; Monday is 0
    assert run("day_of_year(t)", t=t) == [1, 366, None]
    assert run("year(t, 'UTC')", t=t) == [2013, 2016, None]
    old = pa.array([us("1969-12-31T23:00:00"), us("1600-02-29T12:00:00")], pa.timestamp("us"))
    assert run("year(t) * 10000 + month(t) * 100 + day(t)", t=old) == [19691231, 16000229]


def test_date_parts_in_a_time_zone_across_daylight_saving() -> None:
    ny = "'America/New_York'"
    spring = [us("2013-03-10T06:59:59"), us("2013-03-10T07:00:00")]  # 01:59:59 EST, 03:00 EDT
    fall = [us("2013-11-03T05:30:00"), us("2013-11-03T06:30:00")]  # 01:30 EDT, then 01:30 EST
    late = [us("2040-07-01T12:00:00"), us("2040-12-01T12:00:00")]  # rules still apply after 2037
    t = pa.array(spring + fall + late + [None], pa.timestamp("us", tz="UTC"))
    assert run(f"hour(t, {ny})", t=t) == [1, 3, 1, 1, 8, 7, None]
    assert run(f"minute(t, {ny})", t=t) == [59, 0, 30, 30, 0, 0, None]
    assert run(f"day(t, {ny})", t=t) == [10, 10, 3, 3, 1, 1, None]
    new_year = utc("2013-12-31T15:30:00")
    tokyo = "'Asia/Tokyo'"
    assert run(f"year(t, {tokyo}) * 1000 + day_of_year(t, {tokyo})", t=new_year) == [2014001]
    assert run(f"day_of_week(t, {tokyo})", t=new_year) == [2]  # Wednesday 2014-01-01


@pytest.mark.parametrize(
    ("zone", "days"),
    [
        ("America/New_York", ["2013-03-10", "2013-11-03"]),
        ("Australia/Lord_Howe", ["2013-04-06", "2013-10-05"]),  # a half-hour shift
        ("America/St_Johns", ["2013-03-10", "2013-11-03"]),  # a half-hour zone
        ("Asia/Kolkata", ["2013-06-01"]),  # no transition
    ],
)
def test_local_date_parts_row_by_row_across_transitions(zone: str, days: list[str]) -> None:
    # The row path keeps each hour's offset; an hour with a transition inside is never kept.
    # Every minute of the days around each transition, read twice (the second time from the
    # kept hours), agrees with the vectorized path.
    minute = 60 * S
    instants = [
        us(f"{day}T00:00:00") + k * minute for day in days for k in range(-12 * 60, 36 * 60)
    ]
    t = pa.array(instants, pa.timestamp("us", tz="UTC"))
    expr = compile_expression(f"hour(t, '{zone}') * 100 + minute(t, '{zone}')", {"t": "timestamp"})
    vector = expr.evaluate({"t": t}, len(instants)).to_pylist()
    for _ in range(2):
        assert [expr.row({"t": x}) for x in instants] == vector
    local = [datetime.fromtimestamp(x / 1e6, ZoneInfo(zone)) for x in instants]
    assert vector == [d.hour * 100 + d.minute for d in local]


def test_timestamp_columns_of_any_unit_and_zone() -> None:
    instant = us("2013-06-01T12:00:00")
    ns = pa.array([instant * 1000 + 999], pa.timestamp("ns"))
    zoned = pa.array([instant // 1000], pa.timestamp("ms", tz="Europe/Paris"))
    date = pa.array([15857], pa.date32())  # 2013-06-01
    for t in (ns, zoned):
        assert run("hour(t)", t=t) == [12]
    assert run("hour(t) + day(t)", t=date) == [1]
    e = compile_expression("t + seconds(1)", {"t": "timestamp"})
    out = e.evaluate({"t": zoned}, 1)
    assert out.type == pa.timestamp("us", tz="UTC")
    assert out.cast(pa.int64()).to_pylist() == [instant + S]
    assert e.row({"t": instant}) == instant + S


def test_duration_arithmetic() -> None:
    t = utc("2013-01-01T00:00:00", None)
    t2 = utc("2013-01-02T06:00:00", "2013-01-01T00:00:00")
    assert run("t2 - t", t=t, t2=t2) == [30 * 3600 * S, None]
    assert run("to_hours(t2 - t)", t=t, t2=t2) == [30.0, None]
    assert run("t + hours(1) == t2 - hours(29)", t=t, t2=t2) == [True, None]
    assert run("t2 - minutes(90) > t", t=t, t2=t2) == [True, None]
    assert run("seconds(x)", x=[90, None]) == [90 * S, None]
    assert run("minutes(f)", f=[1.5, float("nan")]) == [90 * S, None]
    assert run("days(x) + hours(x)", x=[1]) == [25 * 3600 * S]
    d = pa.array([90 * S, -S, None], pa.duration("us"))
    assert run("to_seconds(d)", d=d) == [90.0, -1.0, None]
    assert run("to_minutes(d * 2)", d=d) == [3.0, -1 / 30, None]
    assert run("-d", d=d) == [-90 * S, S, None]
    assert run("abs(d) / seconds(1)", d=d) == [90.0, 1.0, None]
    assert run("int(d) + int(t)", d=pa.array([5], pa.duration("s")), t=t.slice(0, 1)) == [
        5 * S + us("2013-01-01T00:00:00")
    ]
    assert run("seconds(x)", x=[INT64_MAX // 1000]) == [None]


# --- compile errors ----------------------------------------------------------------------------

TYPES = {"carrier": "string", "dep_delay": "float", "distance": "int", "time_hour": "timestamp"}


@pytest.mark.parametrize(
    ("text", "message", "details"),
    [
        ("carier + 1", "unknown column 'carier'; did you mean 'carrier'?", {"column": "carier"}),
        ("distnce", "did you mean 'distance'?", {"column": "distnce", "position": 0}),
        ("nope", "known columns: carrier, dep_delay, distance, time_hour", {"column": "nope"}),
        ("distance AND true", "keywords are lowercase", {"position": 9}),
        ("hour", "hour is a function", {"column": "hour"}),
        ("lg(distance)", "unknown function lg(); did you mean log()?", {"function": "lg"}),
        ("distance(1)", "'distance' is a column", {"function": "distance"}),
        (
            "clip(distance, 1)",
            "clip() takes 3 arguments, got 2: clip(x, lo, hi)",
            {"function": "clip"},
        ),
        ("hour()", "hour() takes 1 to 2 arguments, got 0", {"function": "hour"}),
        ("least()", "least() takes at least 1 argument, got 0", {"function": "least"}),
        (
            "carrier + 1",
            "'carrier' is string, cannot be added to int",
            {"column": "carrier", "position": 8},
        ),
        ("1 - carrier", "'1' is int, cannot subtract string from it", {"column": "carrier"}),
        ("time_hour + 1", "'time_hour' is timestamp, cannot be added to int", {"position": 10}),
        ("carrier > 1", "'carrier' is string, cannot be compared with int", {"column": "carrier"}),
        ("dep_delay > 1 < 2", "comparisons cannot be chained", {"position": 14}),
        ("sqrt(carrier)", "sqrt() needs a number, but 'carrier' is string", {"function": "sqrt"}),
        ("if(distance, 1, 2)", "the condition of if() must be bool, not int", {"function": "if"}),
        ("if(distance > 1, 'a', 2)", "'2' is int, but if() needs values of one type", {}),
        ("distance and true", "'distance' is int, but 'and' needs bool", {"column": "distance"}),
        ("-carrier", "'carrier' is string and cannot be negated", {"column": "carrier"}),
        ("carrier in (1, 2)", "'1' is int, but 'in' needs values of one type", {}),
        ("carrier in (null)", "null in a list never matches anything", {}),
        ("bucketize(distance, [10, 0])", "edges must be sorted", {"function": "bucketize"}),
        ("bucketize(distance, 10)", "needs its edges as a list", {"function": "bucketize"}),
        ("bucketize(distance, ['a'])", "edges must be numbers", {"function": "bucketize"}),
        ("hash_bucket(carrier, 0)", "needs at least 1 bucket", {"function": "hash_bucket"}),
        ("hash_bucket(carrier, distance)", "number of buckets as an integer literal", {}),
        ("hash_bucket(time_hour, 3)", "needs an int, float, bool or string", {}),
        ("round(dep_delay, 1.5)", "round() needs its digits as an integer literal", {}),
        (
            "hour(time_hour, 'America/New_Yrok')",
            "did you mean 'America/New_York'?",
            {"function": "hour"},
        ),
        ("hour(time_hour, carrier)", "time zone as a string literal", {"function": "hour"}),
        ("year(distance)", "year() needs a timestamp, but 'distance' is int", {}),
        ("string(time_hour)", "string() needs an int, float or bool", {}),
        ("lower([1, 2])", "does not take a list here", {"function": "lower"}),
        ("[1, 2]", "a list can only follow 'in' or be the edges of bucketize()", {}),
        ("distance in (carrier)", "list elements must be literal values", {"position": 13}),
        ("null", "always null", {}),
        ("null + null", "always null", {}),
        ("distance +", "ends where a value was expected", {"position": 10}),
        ("(distance + 1", "expected ')' to close the '(' at position 0", {"position": 13}),
        ("distance = 1", "'=' is not an operator; compare with '=='", {"position": 9}),
        ("distance && true", "use 'and' instead of '&&'", {}),
        ("'abc", "unterminated string", {"position": 0}),
        ("'a\\qb'", "unknown escape \\q", {"position": 2}),
        ("distance 1", "unexpected '1' after a complete expression", {"position": 9}),
        ("99999999999999999999", "does not fit in 64 bits", {}),
        ("1e999", "too large for a float", {}),
        ("", "the expression is empty", {}),
        ("distance $ 2", "unexpected character '$'", {"position": 9}),
    ],
)
def test_compile_errors_say_what_and_where(
    text: str, message: str, details: dict[str, Any]
) -> None:
    err = error(text, TYPES)
    assert message in err.message
    assert err.code == "expression_error" and isinstance(err, LoopmlError)
    assert err.details["expression"] == text
    for key, value in details.items():
        assert err.details[key] == value
    line, marker = err.message.splitlines()[-2:]  # the caret points at the position
    assert line == "  " + text
    assert marker == "  " + " " * err.details["position"] + "^"


def test_caret_in_long_and_multiline_text() -> None:
    text = "distance + " * 30 + "carier"
    err = error(text, TYPES)
    line, marker = err.message.splitlines()[-2:]
    assert line[marker.index("^") :].startswith("carier")
    err = error("distance +\n  carier", TYPES)
    assert err.message.splitlines()[-2:] == ["    carier", "    ^"]


def test_limits_on_size_and_depth() -> None:
    assert "the limit is 10,000" in error("1 + " * 5000 + "1").message
    assert "nested more than" in error("(" * 500 + "1" + ")" * 500).message
    assert "nested more than" in error("-" * 500 + "1.5 * x", {"x": "float"}).message
    assert "nested more than" in error("not " * 500 + "true").message
    assert "nested more than" in error(" + ".join(["1"] * 300)).message
    assert "nested more than" in error("abs(" * 200 + "1" + ")" * 200).message
    deep = "abs(" * 95 + "x" + ")" * 95  # a depth short of the limit compiles and runs
    assert compile_expression(deep, {"x": "int"}).row({"x": -3}) == 3


def test_bad_column_types() -> None:
    assert "expression types are int, float" in error("x", {"x": "int64"}).message
    with pytest.raises(ExpressionError, match="unknown expression type"):
        arrow_type("decimal")  # type: ignore[arg-type]
    with pytest.raises(ExpressionError, match="has no expression type"):
        expr_type_of(pa.list_(pa.int64()))


# --- the Expression object ---------------------------------------------------------------------


def test_expression_api() -> None:
    e = compile_expression("if(dep_delay > 15, 1, 0) + distance", TYPES)
    assert e.type == "int"
    assert e.columns == frozenset({"dep_delay", "distance"})
    assert e.to_dict() == {
        "expression": "if(dep_delay > 15, 1, 0) + distance",
        "type": "int",
        "columns": {"dep_delay": "float", "distance": "int"},
    }
    assert repr(e) == "Expression('if(dep_delay > 15, 1, 0) + distance', type='int')"
    copy = pickle.loads(pickle.dumps(e))
    assert copy == e and hash(copy) == hash(e)
    assert copy.row({"dep_delay": 20.0, "distance": 5}) == 6
    assert e.row({"dep_delay": 20, "distance": 5}) == 6  # an int where a float is declared


def test_evaluate_inputs() -> None:
    e = compile_expression("x * 2 + f", {"x": "int", "f": "float"})
    chunked = pa.chunked_array([pa.array([1, 2], pa.int32()), pa.array([3], pa.int32())])
    f32 = pa.array([0.5, 0.5, None], pa.float32())
    assert e.evaluate({"x": chunked, "f": f32}, 3).to_pylist() == [2.5, 4.5, None]
    assert e.evaluate({"x": np.array([1, 2, 3]), "f": pa.array([0, 0, 0])}, 3).to_pylist() == [
        2.0, 4.0, 6.0,
    ]  # fmt: skip
    assert e.evaluate({"x": pa.nulls(2), "f": pa.array([1.0, 2.0])}, 2).to_pylist() == [None] * 2
    const = compile_expression("'a' + 'b'", {})
    assert const.evaluate({}, 3).to_pylist() == ["ab"] * 3
    assert compile_expression("seconds(5)", {}).evaluate({}, 2).type == pa.duration("us")
    assert (
        compile_expression("x + 1", {"x": "int"})
        .evaluate({"x": pa.array([], pa.int64())}, 0)
        .to_pylist()
        == []
    )
    with pytest.raises(ExpressionError, match="column 'f' is missing") as info:
        e.evaluate({"x": chunked}, 3)
    assert info.value.details["column"] == "f"
    with pytest.raises(ExpressionError, match="has 3 values, expected 4"):
        e.evaluate({"x": chunked, "f": f32}, 4)
    with pytest.raises(ExpressionError, match="declared float but its data is string"):
        e.evaluate({"x": chunked, "f": pa.array(["a", "b", "c"])}, 3)


def test_row_errors_name_the_column() -> None:
    e = compile_expression("x * 2 + f", {"x": "int", "f": "float"})
    with pytest.raises(ExpressionError, match="column 'f' is missing from the row") as info:
        e.row({"x": 1})
    assert info.value.details["column"] == "f"
    with pytest.raises(ExpressionError, match=r"column 'x' is int .* str 'a'"):
        e.row({"x": "a", "f": 1.0})


def test_public_names() -> None:
    for name in features.__all__:
        assert getattr(features, name) is not None
    assert {"Expression", "compile_expression", "ExprType", "parse"} <= set(features.__all__)


def test_both_evaluators_implement_every_operation() -> None:
    vector_ops = set(_expr_vector.KERNELS) | {"lit", "col", "hash_bucket"}
    assert vector_ops == _expr_row.OPS


# --- the two evaluators agree, row for row -----------------------------------------------------

ROW = st.fixed_dictionaries(
    {
        "i": st.one_of(st.none(), st.integers(INT64_MIN, INT64_MAX), st.integers(-20, 20)),
        "j": st.one_of(st.none(), st.integers(-5, 5), st.sampled_from([INT64_MIN, INT64_MAX, -1])),
        "f": st.one_of(
            st.none(),
            st.floats(),
            st.floats(-100, 100),
            st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -1.0]),
        ),
        "g": st.one_of(st.none(), st.floats(-1e3, 1e3), st.sampled_from([0.0, -0.0, 2.0])),
        "b": st.one_of(st.none(), st.booleans()),
        "c": st.one_of(st.none(), st.booleans()),
        "s": st.one_of(
            st.none(),
            st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
            st.sampled_from(["UA", "AA", "", "12", "-7", "+3", "1.5e3", "ß", "İ", "007"]),
        ),
        "t": st.one_of(
            st.none(),
            st.integers(us("1900-01-01T00:00:00"), us("2100-01-01T00:00:00")),
            st.integers(-(2**62), 2**62),
            st.sampled_from([us("2013-03-10T07:00:00"), us("2013-11-03T06:00:00"), 0, -1]),
        ),
        "d": st.one_of(
            st.none(), st.integers(-(2**40), 2**40), st.sampled_from([0, -1, INT64_MIN])
        ),
    }
)
ROW_TYPES = {
    "i": "int", "j": "int", "f": "float", "g": "float", "b": "bool", "c": "bool",
    "s": "string", "t": "timestamp", "d": "duration",
}  # fmt: skip
ARROW = {k: arrow_type(t) for k, t in ROW_TYPES.items()}


def table(rows: list[dict[str, Any]]) -> dict[str, pa.Array]:
    out = {}
    for k, t in ARROW.items():
        values = [r[k] for r in rows]
        if pa.types.is_timestamp(t) or pa.types.is_duration(t):
            out[k] = pa.array(values, pa.int64()).view(t)
        else:
            out[k] = pa.array(values, t)
    return out


EXPRESSIONS = [
    "i + j", "i - j", "i * j", "i / j", "i // j", "i % j", "-i", "abs(i)", "i + 1", "1 - i",
    "i * 3", "i // -1", "10 // j", "i % 0", "f / 0",
    "f + g", "f - g", "f * g", "f / g", "f // g", "f % g", "-f", "abs(f)", "i + f", "j // f",
    "f % i", "f * 2 - 1",
    "i == j", "i < f", "f >= g", "f != g", "s < 'M'", "s == 'UA'", "b == c", "b != true",
    "b and c", "b or c", "not b", "b and i > 0", "f > 0 or c",
    "i in (1, 2, -3)", "f in (0, 1.5, -1)", "s in ('UA', '')", "s not in ('UA', '007')",
    "if(b, i, j)", "if(b, f, i)", "if(c, s, null)", "coalesce(i, j, 0)", "coalesce(f, g)",
    "is_null(f)", "is_null(s)",
    "floor(f)", "ceil(f)", "round(f)", "round(f, 2)", "round(f, -1)", "round(i, 1)",
    "sqrt(f)", "exp(f)", "log(f)", "log1p(f)", "sqrt(i)", "log(i)", "exp(g / 100)",
    "clip(f, -1, 1)", "clip(i, j, 10)", "least(f, g)", "greatest(f, g)", "least(i, j, 3)",
    "greatest(s, 'M')", "greatest(f, 0)", "least(0, f)", "greatest(t, t + d)", "least(d, d * j)",
    "bucketize(f, [-1, 0, 0.5, 10])", "bucketize(i, [0, 10, 100])", "bucketize(j, [0.5])",
    "bucketize(g, [" + ", ".join(str(k) for k in range(-500, 500, 25)) + "])",
    "hash_bucket(s, 7)", "hash_bucket(i, 1000)", "hash_bucket(f, 13)", "hash_bucket(b, 2)",
    "cross(s, i, b, f)", "lower(s)", "upper(s)", "length(s)", "s + '|' + s",
    "int(f)", "int(s)", "int(b)", "float(s)", "float(i)", "float(b)", "string(f)",
    "string(i)", "string(b)", "int(t)", "int(d)",
    "year(t)", "month(t)", "day(t)", "hour(t)", "minute(t)", "day_of_week(t)", "day_of_year(t)",
    "hour(t, 'America/New_York')", "day(t, 'Asia/Kolkata')", "day_of_year(t, 'Pacific/Chatham')",
    "year(t, 'Europe/London')", "minute(t, 'Australia/Lord_Howe')",
    "day_of_week(t, 'America/Sao_Paulo')", "month(t, 'America/St_Johns')",
    "t + d", "t - d", "t - t", "d + d", "d * j", "d / d", "-d", "abs(d)", "seconds(i)",
    "minutes(f)", "hours(j)", "days(g)", "to_seconds(d)", "to_hours(d)", "to_minutes(d)",
    "d > seconds(0)", "t < t + d",
]  # fmt: skip
COMPILED = {text: compile_expression(text, ROW_TYPES) for text in EXPRESSIONS}


@pytest.mark.parametrize("text", EXPRESSIONS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=1, max_size=12))
def test_vector_equals_row(text: str, rows: list[dict[str, Any]]) -> None:
    both(COMPILED[text], table(rows), len(rows))


LEAVES = {
    "int": ["i", "j", "0", "3", "-2", "1000"],
    "float": ["f", "g", "0.5", "-1.5", "2.0", "1e3", "1e308 * 10", "1e308 * 10 - 1e308 * 10"],
    "bool": ["b", "c", "true", "false"],
    "string": ["s", "'UA'", "'x'", "''"],
    "timestamp": ["t"],
    "duration": ["d", "seconds(2)"],
}
# {type} is a random expression of that type; {num} is an int or a float one.
FORMS = {
    "int": [
        "{int} + {int}", "{int} - {int}", "{int} * {int}", "{int} // {int}", "{int} % {int}",
        "abs({int})", "int({float})", "int({string})", "int({duration})", "length({string})",
        "hash_bucket({string}, 7)", "hash_bucket({num}, 5)", "hour({timestamp})",
        "day({timestamp}, 'America/New_York')", "bucketize({num}, [0, 1.5, 10])",
        "if({bool}, {int}, {int})", "coalesce({int}, {int})", "greatest({int}, {int})",
    ],
    "float": [
        "{num} + {num}", "{num} - {num}", "{num} * {num}", "{num} / {num}", "{num} // {num}",
        "{num} % {num}", "sqrt({num})", "log1p({float})", "exp({float})", "log({num})",
        "round({float})", "round({float}, 1)", "floor({float})", "clip({num}, {float}, {num})",
        "float({int})", "float({string})", "to_seconds({duration})", "least({float}, {int})",
        "if({bool}, {float}, {int})", "coalesce({float}, {num})", "-{float}",
    ],
    "bool": [
        "{num} == {num}", "{num} != {num}", "{num} < {num}", "{num} >= {num}",
        "{string} < {string}", "{string} == {string}", "{bool} and {bool}", "{bool} or {bool}",
        "not {bool}", "{timestamp} < {timestamp}", "{duration} >= {duration}", "is_null({num})",
        "{int} in (1, 2, 3)", "{string} not in ('UA', '')", "{float} in (0, 0.5)",
    ],
    "string": [
        "{string} + {string}", "lower({string})", "upper({string})", "string({num})",
        "cross({string}, {num}, {bool})", "if({bool}, {string}, {string})",
        "greatest({string}, {string})", "coalesce({string}, {string})",
    ],
    "timestamp": [
        "{timestamp} + {duration}", "{timestamp} - {duration}", "least({timestamp}, {timestamp})",
        "if({bool}, {timestamp}, {timestamp})",
    ],
    "duration": [
        "{timestamp} - {timestamp}", "{duration} + {duration}", "{duration} * {int}",
        "seconds({int})", "minutes({float})", "abs({duration})", "-{duration}",
    ],
}  # fmt: skip
SLOT = re.compile(r"\{(\w+)\}")


@cache
def _expression(type_: str, depth: int) -> st.SearchStrategy[str]:
    """Well-typed expression text of the given type, nested up to ``depth`` levels."""
    leaf = st.sampled_from([*LEAVES[type_], f"if(false, {LEAVES[type_][0]}, null)"])
    if depth <= 0:
        return leaf

    def child(t: str) -> st.SearchStrategy[str]:
        if t == "num":
            return st.one_of(_expression("int", depth - 1), _expression("float", depth - 1))
        return _expression(t, depth - 1)

    def form(template: str) -> st.SearchStrategy[str]:
        def render(parts: tuple[str, ...]) -> str:
            it = iter(parts)
            return SLOT.sub(lambda _: f"({next(it)})", template)

        return st.tuples(*(child(t) for t in SLOT.findall(template))).map(render)

    return st.one_of(leaf, *(form(t) for t in FORMS[type_]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(*(_expression(t, 3) for t in LEAVES)),
    rows=st.lists(ROW, min_size=1, max_size=8),
)
def test_random_expressions_vector_equals_row(text: str, rows: list[dict[str, Any]]) -> None:
    try:
        expr = compile_expression(text, ROW_TYPES)
    except ExpressionError as exc:
        assume("always null" not in exc.message)
        raise
    both(expr, table(rows), len(rows))
