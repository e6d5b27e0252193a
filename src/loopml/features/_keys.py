"""Entity keys as strings, encoded the same way wherever they are written or read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

_SEP = "\x1f"  # the ASCII unit separator: never in a sane key value


def _part(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        aware = v if v.tzinfo is not None else v.replace(tzinfo=UTC)
        return str(int(aware.timestamp() * 1_000_000))
    if isinstance(v, date):
        return str(int(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp() * 1_000_000))
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def encode_key(values: Sequence[Any]) -> str | None:
    """``("NYC",)`` -> ``"NYC"``; ``("LON", 2013)`` -> ``"LON\\x1f2013"``; None if any part is
    null (a row with a null key belongs to no entity).

    >>> encode_key(["NYC"]), encode_key(["LON", 3]), encode_key(["LON", None])
    ('NYC', 'LON\\x1f3', None)
    """
    parts = []
    for v in values:
        if type(v) is str:  # most key parts: codes and names
            parts.append(v)
        elif v is None:
            return None
        else:
            parts.append(_part(v))
    return _SEP.join(parts)
