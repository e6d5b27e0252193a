"""Request fields: the per-field converters of the request path answer exactly as the general
conversion does, fast paths and kept timestamps included, and refuse the same values."""

from __future__ import annotations

import math
from typing import Any

import pytest

from loopml.errors import UsageError
from loopml.features._online import _convert, _converter

VALUES: dict[str, list[Any]] = {
    "string": ["JFK", "", None, 3, 2.5, True, ["a"]],
    "int": [0, -(2**63), 2**63 - 1, 2**63, 7.0, 7.5, True, False, None, "7", math.nan],
    "float": [0.5, -1e308, 3, True, None, math.nan, math.inf, -math.inf, "0.5", 2**70],
    "bool": [True, False, 1, 0, None, "true"],
    "timestamp": [
        "2013-01-01T05:00:00Z",
        "2013-01-01T05:00:00+00:00",
        "2013-01-01 05:00:00",
        "not a time",
        "",
        1357016400,
        1357016400000000,
        1.5,
        True,
        None,
    ],
    "duration": [60, None],
}


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        got = fn(value)
    except UsageError as exc:
        return "refused", (exc.message, exc.details)
    return "value", (type(got), got)


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_a_field_converter_answers_as_the_general_conversion(kind: str) -> None:
    convert = _converter("f", kind)  # type: ignore[arg-type]
    for _ in range(2):  # the second pass reads kept timestamps
        for value in VALUES[kind]:
            expected = outcome(lambda v: _convert("f", kind, v), value)  # type: ignore[arg-type]
            assert outcome(convert, value) == expected, (kind, value)


def test_kept_timestamps_stay_bounded() -> None:
    convert = _converter("t", "timestamp")
    first = convert("2013-01-01T00:00:00Z")
    for k in range(5000):
        convert(f"2013-01-01T00:00:{k % 60:02d}.{k:06d}Z")
    assert convert("2013-01-01T00:00:00Z") == first
    seen = convert.__closure__  # type: ignore[attr-defined]
    kept = next(c.cell_contents for c in seen if isinstance(c.cell_contents, dict))
    assert len(kept) <= 4096
