"""What the page modules share: the context from the request, times from query strings, forms."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from loopml.errors import UsageError
from loopml.ui._context import UiContext

MAX_FORM_BYTES = 1_000_000  # a bulk action's form names at most some thousands of ids


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
    """The request's form fields (an URL-encoded body, as the pages' forms and htmx send it):
    one value a field, a list for a repeated one or one named ``name[]``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise UsageError(
            f"send the form URL-encoded (application/x-www-form-urlencoded), not {kind}",
            details={"content_type": kind},
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise UsageError(
                f"the form is larger than {MAX_FORM_BYTES:,} bytes",
                details={"limit": MAX_FORM_BYTES},
            )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise UsageError("the form is not UTF-8 text") from None
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key.endswith("[]") or key in out:
            previous = out.get(key, [])
            out[key] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            out[key] = value
    return out
