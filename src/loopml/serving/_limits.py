"""Request bodies bounded while they are read, on every route.

The ASGI ``receive`` of each request is wrapped: a declared ``Content-Length`` over
``serving.max_body_bytes`` is refused before a byte is read, a body that grows past it stops
being read at the limit (never buffered whole), and a body not fully arrived within
``serving.body_timeout`` is answered 408. Either answer closes the connection, so the rest of
the body is neither read nor drained.
"""

from __future__ import annotations

import asyncio
from typing import Any

from loopml.serving._errors import HttpError

Message = dict[str, Any]


def declared_too_large(headers: list[tuple[bytes, bytes]], limit: int) -> HttpError | None:
    """The error for a ``Content-Length`` that is not a number or over ``limit``, if any."""
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                return HttpError(400, "bad_request", "Content-Length is not a number")
            if int(value) > limit:
                return HttpError(
                    413,
                    "too_large",
                    f"the body is {int(value)} bytes; the limit is {limit}",
                    {"limit": limit},
                )
    return None


class LimitedReceive:
    """An ASGI ``receive`` that raises :class:`HttpError` (413, 408) instead of returning
    more than ``limit`` body bytes or waiting past the deadline for them."""

    __slots__ = ("_deadline", "_done", "_receive", "limit", "size", "timeout")

    def __init__(self, receive: Any, limit: int, timeout: float) -> None:
        self._receive = receive
        self.limit = limit
        self.timeout = timeout
        self.size = 0
        self._done = False
        self._deadline = asyncio.get_running_loop().time() + timeout

    async def __call__(self) -> Message:
        if self._done:  # the body is in: later calls wait for the disconnect, unbounded
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message: Message = await self._receive()
        except TimeoutError:
            raise HttpError(
                408,
                "body_timeout",
                f"the body did not arrive within {self.timeout:g} s (serving.body_timeout)",
                {"timeout_s": self.timeout},
            ) from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                self._done = True
                raise HttpError(
                    413,
                    "too_large",
                    f"the body is over the limit of {self.limit} bytes",
                    {"limit": self.limit},
                )
            if not message.get("more_body", False):
                self._done = True
        else:
            self._done = True
        return message

    async def read(self) -> bytes:
        """The whole body (raises HttpError 413/408, or 400 when the client went away)."""
        chunks = []
        while True:
            message = await self()
            if message["type"] == "http.disconnect":
                raise HttpError(400, "disconnected", "the client went away")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)
