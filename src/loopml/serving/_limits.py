"""Request bodies bounded while they are read, on every route.

The ASGI ``receive`` of each request is wrapped: a declared ``Content-Length`` over
``serving.max_body_bytes`` is refused before a byte is read, a body that grows past it stops
being read at the limit (never buffered whole), and a body not fully arrived within
``serving.body_timeout`` is answered 408. Either answer closes the connection, so the rest of
the body is neither read nor drained.

The timeout is kept by one watchdog per worker that wakes every :data:`TICK` seconds and
cancels the reads past their deadline, not by a timer per request: a timer costs ~10 us a
request on the hot path, a watchdog entry well under one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loopml.serving._errors import HttpError

Message = dict[str, Any]
TICK = 0.25  # seconds: how late past its deadline a stalled body may be answered


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


class BodyWatch:
    """The reads of bodies in progress and their deadlines; a background task cancels those
    past due (the read then raises 408)."""

    def __init__(self) -> None:
        self.reading: dict[LimitedReceive, float] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, read: LimitedReceive, deadline: float) -> None:
        self.reading[read] = deadline
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def discard(self, read: LimitedReceive) -> None:
        self.reading.pop(read, None)

    async def _watch(self) -> None:
        while self.reading:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            for read, deadline in list(self.reading.items()):
                if deadline <= now:
                    self.reading.pop(read, None)
                    read.expire()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class LimitedReceive:
    """An ASGI ``receive`` that raises :class:`HttpError` (413, 408) instead of returning
    more than ``limit`` body bytes or waiting past the deadline for them."""

    __slots__ = ("_done", "_expired", "_receive", "_task", "_watch", "limit", "size", "timeout")

    def __init__(self, receive: Any, limit: int, timeout: float, watch: BodyWatch) -> None:
        self._receive = receive
        self.limit = limit
        self.timeout = timeout
        self.size = 0
        self._done = False
        self._expired = False
        self._watch = watch
        self._task: asyncio.Task[Any] | None = None

    def expire(self) -> None:
        """Past the deadline: the read waiting now (or the next one) raises 408."""
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def __call__(self) -> Message:
        if self._done:  # the body is in: later calls wait for the disconnect, unbounded
            return await self._receive()
        if self._task is None:  # the first read: the deadline runs from here
            self._task = asyncio.current_task()
            self._watch.add(self, time.monotonic() + self.timeout)
        if self._expired:
            raise self._timed_out()
        try:
            message: Message = await self._receive()
        except asyncio.CancelledError:
            if not self._expired or self._task is None:
                raise
            self._task.uncancel()
            raise self._timed_out() from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                self._finish()
                raise HttpError(
                    413,
                    "too_large",
                    f"the body is over the limit of {self.limit} bytes",
                    {"limit": self.limit},
                )
            if not message.get("more_body", False):
                self._finish()
        else:
            self._finish()
        return message

    def _finish(self) -> None:
        self._done = True
        self._watch.discard(self)

    def _timed_out(self) -> HttpError:
        self._finish()
        return HttpError(
            408,
            "body_timeout",
            f"the body did not arrive within {self.timeout:g} s (serving.body_timeout)",
            {"timeout_s": self.timeout},
        )

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
