"""Values formatted for a person, as the dashboard's templates show them: numbers with thousands
separated and a few significant digits (never ``2.4236900000147443``), shares as percentages,
latencies and sizes with their units, times in UTC, a dash for nothing.

>>> str(number(2.4236900000147443)), str(number(12345)), str(percent(0.1234))
('2.424', '12,345', '12.3%')
>>> str(latency_us(1534.0)), str(size(3_500_000)), str(seconds(5400))
('1.53 ms', '3.5 MB', '90 min')
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from loopml import _htmlkit as kit

NA = Markup(kit.NA)


def _real(x: Any) -> float | None:
    return kit.num(x)


def number(x: Any, digits: int = 4) -> Markup:
    """Any value for a table cell: numbers formatted, the rest escaped, a dash for None."""
    return Markup(kit.fmt(x, digits))


def percent(x: Any) -> Markup:
    return Markup(kit.pct(x))


def latency_us(x: Any) -> Markup:
    """Microseconds as µs, ms or s."""
    v = _real(x)
    if v is None:
        return NA
    if v < 1000:
        return Markup(f"{v:.3g} µs")
    if v < 1_000_000:
        return Markup(f"{v / 1000:.3g} ms")
    return Markup(f"{v / 1_000_000:.3g} s")


def size(x: Any) -> Markup:
    """Bytes as B, kB, MB or GB (powers of 1000, as disks are sold)."""
    v = _real(x)
    if v is None:
        return NA
    for unit in ("B", "kB", "MB", "GB"):
        if abs(v) < 1000 or unit == "GB":
            return Markup(f"{v:,.0f} B" if unit == "B" else f"{v:.3g} {unit}")
        v /= 1000
    return NA  # pragma: no cover - the loop returns


def seconds(x: Any) -> Markup:
    """A duration in seconds as s, min, h or days."""
    s = _real(x)
    if s is None:
        return NA
    if s < 120:
        return Markup(f"{s:.3g} s")
    unit, name = (60, "min") if s < 7200 else (3600, "h") if s < 172800 else (86400, "days")
    return Markup(f"{s / unit:.3g} {name}")


def when(x: Any) -> Markup:
    """A time in UTC to the minute (to the second when it has seconds), a dash for None."""
    if x is None:
        return NA
    if isinstance(x, str):
        t = kit.time(x)
        if t is None:
            return Markup(escape(x))
        x = t
    if isinstance(x, datetime):
        t = x.astimezone(UTC) if x.tzinfo is not None else x
        return Markup(t.strftime("%Y-%m-%d %H:%M:%S" if t.second else "%Y-%m-%d %H:%M") + " UTC")
    return Markup(escape(x))


def iso(x: Any) -> str:
    """A time for a form field or a link (``YYYY-MM-DDTHH:MM``)."""
    if isinstance(x, datetime):
        t = x.astimezone(UTC) if x.tzinfo is not None else x
        return t.strftime("%Y-%m-%dT%H:%M")
    return "" if x is None else str(x)


def signed(x: Any) -> Markup:
    """A change with its sign: +0.012, −3.4%."""
    v = _real(x)
    if v is None:
        return NA
    if v == 0 or not math.isfinite(v):
        return Markup(kit.fmt(v))
    return Markup(("+" if v > 0 else "−") + kit.fmt(abs(v)))


FILTERS = {
    "number": number,
    "percent": percent,
    "latency_us": latency_us,
    "size": size,
    "seconds": seconds,
    "when": when,
    "iso": iso,
    "signed": signed,
}


def _utc_naive(x: Any) -> Any:
    """Every aware time in a figure as the same instant in UTC without its offset: plotly.js
    reads no offsets (``...+00:00`` would make a time axis of categories)."""
    if isinstance(x, datetime):
        return x.astimezone(UTC).replace(tzinfo=None) if x.tzinfo is not None else x
    if isinstance(x, dict):
        return {k: _utc_naive(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_utc_naive(v) for v in x]
    return x


def chart(fig: Any, div_id: str) -> Markup:
    """A Plotly figure as a ``div`` holding its JSON, drawn by ``static/ui.js`` once Plotly has
    loaded (on a whole page or in a fragment htmx swapped in): no inline script, so it does not
    matter when Plotly arrives."""
    import plotly.io.json as pjson

    plain = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else fig
    figure = pjson.to_json_plotly(_utc_naive(plain))
    return Markup(f'<div class="chart" id="{escape(div_id)}" data-figure="{escape(figure)}"></div>')
