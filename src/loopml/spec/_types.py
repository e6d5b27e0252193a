"""Small types shared by the spec models: names, durations, UTC datetimes."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

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
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
        iso = _ISO_DURATION.match(value)
        if iso and value.strip() not in ("P", "PT") and not value.strip().endswith("T"):
            w, d, h, mi, sec = (float(g) if g else 0.0 for g in iso.groups())
            return timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=sec)
    raise ValueError(f"{value!r} is not a duration: write e.g. 90s, 15m, 6h, 1d or 2w")


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration, for round trips through YAML and JSON."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        n = seconds / _UNITS[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{seconds}s"


DURATION_JSON_SCHEMA: dict[str, Any] = {
    "type": ["string", "number"],
    "pattern": DURATION_PATTERN,
    "description": "A duration: 90s, 15m, 6h, 1d, 2w (also 500ms, ISO 8601 such as PT6H, or "
    "a number of seconds).",
    "examples": ["15m", "6h", "1d", "2w"],
}

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(DURATION_JSON_SCHEMA),
]


def _to_utc(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_to_utc)]
