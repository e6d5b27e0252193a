"""The contract every event-log backend passes.

Subclass it in a test module and provide a ``log`` fixture returning a fresh, empty log (closed
by the fixture afterwards)::

    class TestMyBackend(EventLogContract):
        @pytest.fixture
        def log(self): ...

The semantics are those of Redis Streams consumer groups (see :mod:`loopml.storage._events`):
at-least-once delivery, a consumer's unacknowledged entries come back to it first, and idle
entries of a dead consumer can be claimed by a live one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from loopml.errors import UsageError
from loopml.storage import Event, EventLog, id_order


def _raises(exc: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except exc as caught:
        return caught
    raise AssertionError(f"expected {exc.__name__}")


def _ids(events: list[Event]) -> list[str]:
    return [e.id for e in events]


def _payloads(events: list[Event]) -> list[bytes]:
    return [e.payload for e in events]


def _numbered(n: int, start: int = 0) -> list[bytes]:
    return [f"e{i}".encode() for i in range(start, start + n)]


class EventLogContract:
    """Behaviour every event-log backend must show."""

    def test_is_an_event_log(self, log: EventLog) -> None:
        assert isinstance(log, EventLog)

    def test_payload_bytes_round_trip(self, log: EventLog) -> None:
        payloads = [b"", b"x", bytes(range(256)), b"\x00\xff" * 7, os.urandom(1 << 20)]
        ids = log.append("s", payloads)
        got = log.read("s", "g", "c")
        assert _ids(got) == ids
        assert _payloads(got) == payloads
        assert all(type(e.payload) is bytes for e in got)

    def test_append_nothing(self, log: EventLog) -> None:
        assert log.append("s", []) == []
        assert log.length("s") == 0

    def test_ids_strictly_increase(self, log: EventLog) -> None:
        ids: list[str] = []
        for batch in range(5):
            ids += log.append("s", _numbered(7, start=batch * 7))
        order = [id_order(i) for i in ids]
        assert order == sorted(order) and len(set(order)) == len(order) == 35
        got = log.read("s", "g", "c", count=100)
        assert _ids(got) == ids
        assert _payloads(got) == _numbered(35)

    def test_groups_read_independently(self, log: EventLog) -> None:
        ids = log.append("s", _numbered(5))
        assert _ids(log.read("s", "a", "c")) == ids
        log.ack("s", "a", ids)
        assert _ids(log.read("s", "b", "c")) == ids  # group b starts at the beginning too
        assert log.pending("s", "a") == 0 and log.pending("s", "b") == 5
        more = log.append("s", _numbered(2, start=5))
        assert _ids(log.read("s", "a", "c")) == more

    def test_consumers_of_a_group_get_disjoint_entries(self, log: EventLog) -> None:
        ids = log.append("s", _numbered(10))
        first = log.read("s", "g", "c1", count=4)
        second = log.read("s", "g", "c2", count=100)
        assert len(first) == 4 and len(second) == 6
        assert set(_ids(first)).isdisjoint(_ids(second))
        assert sorted(_ids(first) + _ids(second), key=id_order) == ids
        assert log.read("s", "g", "c3") == []

    def test_unacked_entries_come_back_first(self, log: EventLog) -> None:
        ids = log.append("s", _numbered(6))
        first = log.read("s", "g", "c", count=3)
        assert _ids(first) == ids[:3]
        # The consumer crashed before acknowledging: its restart gets the same entries again,
        # before anything new, however many new ones there are.
        log.append("s", _numbered(4, start=6))
        again = log.read("s", "g", "c", count=10)
        assert _ids(again) == ids[:3] and _payloads(again) == _payloads(first)
        assert log.ack("s", "g", ids[:3]) == 3
        after = log.read("s", "g", "c", count=3)
        assert _ids(after) == ids[3:6]

    def test_pending_entries_come_back_in_pages(self, log: EventLog) -> None:
        ids = log.append("s", _numbered(5))
        log.read("s", "g", "c", count=5)
        assert _ids(log.read("s", "g", "c", count=2)) == ids[:2]
        log.ack("s", "g", ids[:2])
        assert _ids(log.read("s", "g", "c", count=10)) == ids[2:]

    def test_ack(self, log: EventLog) -> None:
        ids = log.append("s", _numbered(3))
        assert log.ack("s", "g", ids) == 0  # the group has delivered nothing yet
        log.read("s", "g", "c")
        assert log.ack("s", "g", []) == 0
        assert log.ack("s", "g", ["0-1", "999999999999999-0"]) == 0  # ids never handed out
        assert log.ack("s", "other", ids) == 0
        assert log.ack("s", "g", [ids[0], ids[0]]) == 1
        assert log.ack("s", "g", ids) == 2
        assert log.ack("s", "g", ids) == 0
        assert log.pending("s", "g") == 0

    def test_ack_of_a_malformed_id_is_a_usage_error(self, log: EventLog) -> None:
        log.append("s", [b"x"])
        log.read("s", "g", "c")
        _raises(UsageError, lambda: log.ack("s", "g", ["not-an-id"]))

    def test_claim_takes_a_dead_consumers_idle_entries(self, log: EventLog) -> None:
        ids = log.append("s", _numbered(5))
        taken = log.read("s", "g", "dead", count=3)
        assert log.claim("s", "g", "live", min_idle_ms=60_000) == []  # not idle long enough
        time.sleep(0.06)
        claimed = log.claim("s", "g", "live", min_idle_ms=30)
        assert _ids(claimed) == _ids(taken) == ids[:3]
        assert _payloads(claimed) == _payloads(taken)
        assert log.pending("s", "g") == 3
        # They are live's now: its next read returns them, the dead one's returns new entries.
        assert _ids(log.read("s", "g", "live")) == ids[:3]
        assert _ids(log.read("s", "g", "dead")) == ids[3:]
        assert log.claim("s", "g", "live", min_idle_ms=60_000) == []

    def test_claim_leaves_own_and_busy_entries(self, log: EventLog) -> None:
        log.append("s", _numbered(4))
        mine = log.read("s", "g", "me", count=2)
        time.sleep(0.3)
        others = log.read("s", "g", "other", count=2)  # just delivered: not idle
        assert log.claim("s", "g", "me", min_idle_ms=200) == []
        assert log.claim("s", "g", "x", min_idle_ms=200) == mine
        assert _ids(log.read("s", "g", "other")) == _ids(others)

    def test_claim_on_unknown_group(self, log: EventLog) -> None:
        assert log.claim("s", "g", "c", min_idle_ms=0) == []

    def test_counts(self, log: EventLog) -> None:
        assert log.length("s") == 0 and log.pending("s", "g") == 0
        ids = log.append("s", _numbered(8))
        assert log.length("s") == 8
        log.read("s", "g", "a", count=5)
        log.read("s", "g", "b", count=2)
        assert log.pending("s", "g") == 7 and log.pending("s", "h") == 0
        log.ack("s", "g", ids[:4])
        assert log.pending("s", "g") == 3
        assert log.length("s") == 8  # acknowledging does not remove entries from the stream

    def test_blocked_read_returns_when_an_entry_arrives(self, log: EventLog) -> None:
        log.read("s", "g", "c")  # creates the group, so that waiting starts at the end
        ids: list[str] = []
        timer = threading.Timer(0.2, lambda: ids.extend(log.append("s", [b"late"])))
        started = time.monotonic()
        timer.start()
        try:
            got = log.read("s", "g", "c", block_ms=10_000)
        finally:
            timer.join()
        elapsed = time.monotonic() - started
        assert _payloads(got) == [b"late"] and _ids(got) == ids
        assert 0.15 <= elapsed < 2.0, elapsed

    def test_blocked_read_times_out_empty(self, log: EventLog) -> None:
        log.append("other", [b"x"])
        started = time.monotonic()
        assert log.read("s", "g", "c", block_ms=150) == []
        elapsed = time.monotonic() - started
        assert 0.12 <= elapsed < 2.0, elapsed
        started = time.monotonic()
        assert log.read("s", "g", "c") == []  # block_ms=0 does not wait
        assert time.monotonic() - started < 0.5

    def test_streams_are_isolated(self, log: EventLog) -> None:
        a = log.append("a", [b"a1", b"a2"])
        b = log.append("b", [b"b1"])
        log.append("a:b", [b"ab"])  # a separator in a name must not reach another stream
        assert _payloads(log.read("a", "g", "c")) == [b"a1", b"a2"]
        assert _payloads(log.read("b", "g", "c")) == [b"b1"]
        assert (log.length("a"), log.length("b"), log.length("a:b")) == (2, 1, 1)
        assert log.pending("a", "g") == 2 and log.pending("b", "g") == 1
        log.ack("b", "g", a)  # ids belong to their stream: whatever this acknowledges is b's
        assert log.pending("a", "g") == 2
        assert log.ack("a", "g", a) == 2 and log.ack("a", "g", b) == 0

    def test_delete_stream(self, log: EventLog) -> None:
        log.append("s", _numbered(3))
        log.append("keep", [b"k"])
        log.read("s", "g", "c")
        log.delete_stream("s")
        assert log.length("s") == 0 and log.pending("s", "g") == 0
        assert log.read("s", "g", "c") == []
        log.delete_stream("s")  # deleting again (or a stream never written) is no error
        log.delete_stream("never")
        again = log.append("s", [b"new"])
        got = log.read("s", "g", "c")
        assert _ids(got) == again and _payloads(got) == [b"new"]
        assert log.length("keep") == 1

    def test_bad_arguments_are_usage_errors(self, log: EventLog) -> None:
        _raises(UsageError, lambda: log.append("", [b"x"]))
        _raises(UsageError, lambda: log.read("s", "", "c"))
        _raises(UsageError, lambda: log.read("s", "g", ""))
        _raises(UsageError, lambda: log.read("s", "g", "c", count=0))

    def test_ten_thousand_in_pages_lose_and_duplicate_nothing(self, log: EventLog) -> None:
        payloads = _numbered(10_000)
        ids: list[str] = []
        for start in range(0, len(payloads), 2_500):
            ids += log.append("s", payloads[start : start + 2_500])
        assert log.length("s") == 10_000
        seen: list[Event] = []
        while page := log.read("s", "g", "c", count=1_000):
            assert len(page) <= 1_000
            seen += page
            assert log.ack("s", "g", _ids(page)) == len(page)
        assert _ids(seen) == ids
        assert _payloads(seen) == payloads
        assert log.pending("s", "g") == 0
