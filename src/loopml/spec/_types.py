"""Small types shared by the spec models: names, durations, UTC datetimes."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
SOURCE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,62}$"
_SHORT = r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*"
_NUM = r"(\d+(?:\.\d+)?)"
# ISO 8601 without years and months (their length varies): P2W, P1D, PT6H, PT0.2S, P1DT12H.
_ISO = rf"P(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?"
_DURATION = re.compile(rf"^{_SHORT}$")
_ISO_DURATION = re.compile(rf"^\s*{_ISO}\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_PATTERN = rf"^(?:{_SHORT}|\s*{_ISO}\s*)$"


def parse_duration(value: Any) -> timedelta:
    """Parse ``"90s"``, ``"15m"``, ``"6h"``, ``"1d"``, ``"2w"``, an ISO 8601 duration
    (``"PT6H"``, ``"P1D"``) or a number of seconds.

    >>> parse_duration("36h")
    datetime.timedelta(days=1, seconds=43200)
    >>> parse_duration("P1DT12H")
    datetime.timedelta(days=1, seconds=43200)
    """
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return timedelta(seconds=value)
        elif isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
            iso = _ISO_DURATION.match(value)
            if iso and value.strip() not in ("P", "PT") and not value.strip().endswith("T"):
                w, d, h, mi, sec = (float(g) if g else 0.0 for g in iso.groups())
                return timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=sec)
    except OverflowError:
        # timedelta holds under 2.7 million years; 1e30s or 99999999999d are mistakes.
        raise ValueError(
            f"{value!r} is out of range: a duration is at most 36525d (100 years)"
        ) from None
    shown = _SPECIAL.get(str(value), repr(value)) if isinstance(value, float) else repr(value)
    raise ValueError(f"{shown} is not a duration: write e.g. 90s, 15m, 6h, 1d or 2w")


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration, for round trips through YAML and JSON."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        n = seconds / _UNITS[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{seconds}s"


# Counts of rows, labels or predictions: a trillion is more than any store here holds, and
# every such count still fits the metadata store's 64-bit integers.
MAX_ROWS = 10**12

# Spec durations stay within a century: longer is a typo, and dates plus it must not overflow.
MAX_DURATION = timedelta(days=36525)
# Said as loopml.spec._allowed says every range (it reads them from the JSON Schema).
_RANGE = "from 0s to 36525d"
_POSITIVE_RANGE = "greater than 0s and at most 36525d"
_SPECIAL = {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}


def _in_range(value: timedelta) -> timedelta:
    if not timedelta(0) <= value <= MAX_DURATION:
        raise ValueError(f"{format_duration(value)} is out of range: allowed a duration {_RANGE}")
    return value


def _positive(value: timedelta) -> timedelta:
    if not timedelta(0) < value <= MAX_DURATION:
        raise ValueError(
            f"{format_duration(value)} is out of range: allowed a duration {_POSITIVE_RANGE}"
        )
    return value


def _duration_schema(*, positive: bool) -> dict[str, Any]:
    bound: dict[str, Any] = {"exclusiveMinimum": 0} if positive else {"minimum": 0}
    return {
        "type": ["string", "number"],
        "pattern": DURATION_PATTERN,
        "description": "A duration: 90s, 15m, 6h, 1d, 2w (also 500ms, ISO 8601 such as PT6H, or "
        f"a number of seconds), {_POSITIVE_RANGE if positive else _RANGE} (100 years).",
        "examples": ["15m", "6h", "1d", "2w"],
        **bound,
        "maximum": MAX_DURATION.total_seconds(),
    }


DURATION_JSON_SCHEMA: dict[str, Any] = _duration_schema(positive=False)

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_in_range),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(DURATION_JSON_SCHEMA),
]
"""A duration from 0 to 100 years (0 where it means "none" or "at once")."""

PositiveDuration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_duration_schema(positive=True)),
]
"""A duration longer than 0, up to 100 years (a period, a window, an interval, a timeout)."""


def _to_utc(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_to_utc)]
