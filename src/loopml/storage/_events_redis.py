"""The production event log: Redis Streams and their consumer groups.

One stream per loopml stream, at ``{prefix}:stream:{name}`` with the name percent-encoded (so a
name holding ``:`` or ``*`` stays one key of its own and never matches another's pattern). Each
entry has one field, ``p``, holding the payload.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from loopml.errors import BackendUnavailable, StorageError, UsageError
from loopml.spec import RedisConfig
from loopml.storage._events import Event

_FIELD = b"p"
_CLAIM_PAGE = 1000


class RedisEventLog:
    """An :class:`~loopml.storage.EventLog` on a Redis server (safe for many processes and
    machines; Redis does the bookkeeping of groups, pending entries and idle times).

    Opening checks that the server answers, so a wrong URL fails here and not at the first
    event.
    """

    def __init__(self, config: RedisConfig) -> None:
        try:
            import redis
        except ImportError as exc:
            raise BackendUnavailable(
                "the Redis event log needs redis-py: pip install 'loopml[redis]'",
                details={"extra": "redis"},
            ) from exc
        self._errors = redis.exceptions
        self.prefix = config.prefix
        self._url = _safe_url(config.url)
        # RESP2, the reply shapes parsed below. No socket timeout, so a blocking read waits as
        # long as its caller asked; connecting to a dead host still gives up. Typed Any because
        # redis-py annotates every reply as "value or Awaitable", which says nothing here.
        self._client: Any = redis.Redis.from_url(config.url, protocol=2, socket_connect_timeout=10)
        with self._translate("PING"):
            self._client.ping()

    def describe(self) -> str:
        """Where the log is, without credentials."""
        return f"{self._url} (prefix {self.prefix})"

    # -- the protocol ---------------------------------------------------------------------------

    def append(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        """XADD every payload in one MULTI/EXEC: the batch appears whole or not at all."""
        key = self._key(stream)
        if not payloads:
            return []
        pipe = self._client.pipeline(transaction=True)
        for payload in payloads:
            pipe.xadd(key, {_FIELD: payload})
        with self._translate("XADD"):
            ids = pipe.execute()
        return [_text(i) for i in ids]

    def read(
        self, stream: str, group: str, consumer: str, *, count: int = 1000, block_ms: int = 0
    ) -> list[Event]:
        """This consumer's pending entries (XREADGROUP from id 0), else new ones (id ``>``)."""
        key = self._key(stream)
        _check_name("group", group)
        _check_name("consumer", consumer)
        if count < 1:
            raise UsageError(
                f"read count must be at least 1, got {count}", details={"count": count}
            )
        events = self._read_group(key, group, consumer, "0", count, None)
        if events:
            return events
        # redis-py sends BLOCK only when block is not None, and BLOCK 0 would wait forever.
        return self._read_group(
            key, group, consumer, ">", count, block_ms if block_ms > 0 else None
        )

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """XACK; returns how many of ``ids`` were pending."""
        if not ids:
            return 0
        with self._translate("XACK"):
            return int(self._client.xack(self._key(stream), group, *ids))

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int) -> list[Event]:
        """Move other consumers' entries idle for ``min_idle_ms`` to ``consumer``.

        XAUTOCLAIM would also hand the caller its own idle entries; the protocol promises other
        consumers' only, so the candidates are listed (XPENDING with IDLE) and taken with XCLAIM,
        which checks the idle time again: an entry another claimer took meanwhile is skipped.
        """
        key = self._key(stream)
        _check_name("consumer", consumer)
        me = consumer.encode()
        idle = max(min_idle_ms, 0)
        claimed: list[Event] = []
        start = "-"
        while True:
            with self._translate("XPENDING"):
                try:
                    page = self._client.xpending_range(
                        key, group, min=start, max="+", count=_CLAIM_PAGE, idle=idle
                    )
                except self._errors.ResponseError as exc:
                    if _is_nogroup(exc):
                        return []
                    raise
            ids = [p["message_id"] for p in page if p["consumer"] != me]
            if ids:
                with self._translate("XCLAIM"):
                    entries = self._client.xclaim(key, group, consumer, idle, ids)
                claimed.extend(_events(entries))
            if len(page) < _CLAIM_PAGE:
                return claimed
            start = "(" + _text(page[-1]["message_id"])

    def pending(self, stream: str, group: str) -> int:
        with self._translate("XPENDING"):
            try:
                summary = self._client.xpending(self._key(stream), group)
            except self._errors.ResponseError as exc:
                if _is_nogroup(exc):
                    return 0
                raise
        return int(summary["pending"])

    def length(self, stream: str) -> int:
        with self._translate("XLEN"):
            return int(self._client.xlen(self._key(stream)))

    def delete_stream(self, stream: str) -> None:
        """DEL the stream key: its entries and groups go with it."""
        with self._translate("DEL"):
            self._client.delete(self._key(stream))

    def close(self) -> None:
        self._client.close()

    # -- internals ------------------------------------------------------------------------------

    def _key(self, stream: str) -> str:
        _check_name("stream", stream)
        return f"{self.prefix}:stream:{quote(stream, safe='')}"

    def _read_group(
        self, key: str, group: str, consumer: str, start: str, count: int, block: int | None
    ) -> list[Event]:
        for attempt in (1, 2):
            with self._translate("XREADGROUP"):
                try:
                    reply = self._client.xreadgroup(
                        group, consumer, {key: start}, count=count, block=block
                    )
                    break
                except self._errors.ResponseError as exc:
                    if not _is_nogroup(exc) or attempt == 2:
                        raise
                self._create_group(key, group)
        entries = [entry for _key, stream_entries in reply or () for entry in stream_entries]
        # An entry deleted behind the group's back (XDEL, XTRIM) comes back without fields; it
        # can never be handled, so it is acknowledged rather than redelivered forever.
        gone = [entry_id for entry_id, fields in entries if fields is None]
        if gone:
            with self._translate("XACK"):
                self._client.xack(key, group, *gone)
        return _events(entries)

    def _create_group(self, key: str, group: str) -> None:
        # At id 0, so that a new group reads the stream from its beginning; two consumers may
        # race to create it, and the loser's BUSYGROUP means it exists, which is all we need.
        with self._translate("XGROUP CREATE"):
            try:
                self._client.xgroup_create(key, group, id="0", mkstream=True)
            except self._errors.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    @contextmanager
    def _translate(self, command: str) -> Iterator[None]:
        details = {"store": self._url, "command": command}
        try:
            yield
        except (self._errors.ConnectionError, self._errors.TimeoutError) as exc:
            raise BackendUnavailable(
                f"Redis at {self._url} is unreachable ({command}): {exc}; check that the server "
                "runs and that the URL under storage.events in loopml.yaml is right",
                details=details,
            ) from exc
        except self._errors.ResponseError as exc:
            if "Invalid stream ID" in str(exc):
                raise UsageError(
                    f"not an event id (expected 'N-M', as returned by append): {exc}",
                    details=details,
                ) from exc
            raise StorageError(
                f"Redis at {self._url} refused {command}: {exc}", details=details
            ) from exc


def _events(entries: Sequence[tuple[Any, Any]]) -> list[Event]:
    return [
        Event(id=_text(entry_id), payload=fields[_FIELD])
        for entry_id, fields in entries
        if fields is not None
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_nogroup(exc: Exception) -> bool:
    return str(exc).startswith("NOGROUP")


def _check_name(kind: str, name: str) -> None:
    if not name:
        raise UsageError(f"the {kind} name must not be empty", details={kind: name})


def _safe_url(url: str) -> str:
    """The URL with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
