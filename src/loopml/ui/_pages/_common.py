"""What the page modules share: the context from the request, times from query strings, forms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from loopml.errors import UsageError
from loopml.ui._context import UiContext


def ui(request: Request) -> UiContext:
    ctx: UiContext = request.app.state.ui
    return ctx


def parse_time(value: str | None, name: str) -> datetime | None:
    """A time from a query string or form (``2013-04-01``, ``2013-04-01T12:00``, UTC unless it
    says otherwise); empty is None."""
    if value is None or not value.strip():
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"{name}: {value!r} is not a time (write 2013-04-01 or 2013-04-01T12:00)",
            details={"field": name},
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def parse_int(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise UsageError(
            f"{name}: {value!r} is not a whole number", details={"field": name}
        ) from None
    if not low <= n <= high:
        raise UsageError(f"{name} must be {low} to {high}, not {n}", details={"field": name})
    return n


async def form_of(request: Request) -> dict[str, Any]:
    """The request's form fields (the last value of a repeated one, lists under ``name[]``)."""
    form = await request.form()
    out: dict[str, Any] = {}
    for key in form:
        values = form.getlist(key)
        out[key] = values if key.endswith("[]") or len(values) > 1 else values[0]
    return out
