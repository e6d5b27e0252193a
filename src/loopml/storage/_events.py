"""The event transport role: append-only streams read by consumer groups, delivered at least
once.

Semantics (those of Redis Streams, which the SQLite log reproduces):

- ``append`` adds payloads at the end of a stream and returns their ids. Ids increase along a
  stream; compare them with :func:`id_order`, never as strings.
- Each consumer *group* reads a stream independently. ``read`` first returns the entries already
  delivered to this consumer and not yet acknowledged (its pending entries, as after a crash),
  then entries never delivered to the group. ``ack`` removes entries from the pending list.
- ``claim`` moves pending entries idle longer than ``min_idle_ms`` from other (dead) consumers to
  this one.
- Payloads are bytes (loopml writes orjson).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Event:
    id: str
    payload: bytes


def id_order(event_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``: ids in stream order."""
    major, _, minor = event_id.partition("-")
    return int(major), int(minor or 0)


@runtime_checkable
class EventLog(Protocol):
    def append(self, stream: str, payloads: Sequence[bytes]) -> list[str]: ...

    def read(
        self, stream: str, group: str, consumer: str, *, count: int = 1000, block_ms: int = 0
    ) -> list[Event]:
        """Up to ``count`` entries for ``consumer`` in ``group``: its pending ones first, then
        new ones. With ``block_ms`` > 0 and nothing to return, wait up to that long for new
        entries. A group that does not exist yet is created, starting at the stream's
        beginning."""
        ...

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge entries; returns how many were pending."""
        ...

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int) -> list[Event]:
        """Take over other consumers' pending entries idle for at least ``min_idle_ms``."""
        ...

    def pending(self, stream: str, group: str) -> int:
        """How many entries of the group are delivered but not acknowledged."""
        ...

    def length(self, stream: str) -> int: ...

    def delete_stream(self, stream: str) -> None: ...

    def close(self) -> None: ...
