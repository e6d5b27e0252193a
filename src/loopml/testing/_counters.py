"""The contract every counter store passes, and an in-memory counter store for users' tests.

Subclass the contract in a test module and provide a ``counters`` fixture returning a fresh,
empty store (closed by the fixture afterwards)::

    class TestMyCounters(CounterStoreContract):
        @pytest.fixture
        def counters(self): ...

>>> from loopml.storage import Counter
>>> counters = MemoryCounters()
>>> counters.add(1, {(2, "requests"): Counter(1, 1, 1)})
>>> counters.counts(1)[2]["requests"].n
1.0
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from loopml.storage import Counter, CounterStore, Counts


class MemoryCounters:
    """A counter store in this process's memory, with the atomicity of the real ones (one lock):
    for tests of code that takes a :class:`~loopml.storage.CounterStore`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, dict[tuple[int, str], Counter]] = {}
        self._snapshots: dict[tuple[int, str], tuple[float, dict[int, Counter]]] = {}

    def describe(self) -> str:
        return "memory"

    def add(self, rollout_id: int, counts: Mapping[tuple[int, str], Counter]) -> None:
        with self._lock:
            held = self._counts.setdefault(int(rollout_id), {})
            for key, c in counts.items():
                old = held.get(key, Counter())
                held[key] = Counter(old.n + c.n, old.total + c.total, old.total_sq + c.total_sq)

    def counts(self, rollout_id: int) -> Counts:
        with self._lock:
            out: Counts = {}
            for (version, name), c in self._counts.get(int(rollout_id), {}).items():
                out.setdefault(version, {})[name] = c
            return out

    def put_snapshot(
        self, rollout_id: int, name: str, stamp: float, values: Mapping[int, Counter]
    ) -> bool:
        key = (int(rollout_id), name)
        with self._lock:
            if key in self._snapshots and self._snapshots[key][0] >= stamp:
                return False
            self._snapshots[key] = (float(stamp), dict(values))
            return True

    def snapshot(self, rollout_id: int, name: str) -> tuple[float, dict[int, Counter]]:
        with self._lock:
            stamp, values = self._snapshots.get((int(rollout_id), name), (float("-inf"), {}))
            return stamp, dict(values)

    def drop(self, rollout_id: int) -> None:
        with self._lock:
            self._counts.pop(int(rollout_id), None)
            for key in [k for k in self._snapshots if k[0] == int(rollout_id)]:
                del self._snapshots[key]

    def close(self) -> None:
        pass


class CounterStoreContract:
    """Behaviour every counter store must show."""

    def test_adds_and_reads(self, counters: CounterStore) -> None:
        assert counters.counts(7) == {}
        counters.add(7, {(1, "requests"): Counter(2, 2, 2), (2, "reward"): Counter(3, 1.5, 1.25)})
        counters.add(7, {(1, "requests"): Counter(1, 1, 1)})
        counters.add(8, {(1, "requests"): Counter(100, 100, 100)})
        assert counters.counts(7) == {
            1: {"requests": Counter(3, 3, 3)},
            2: {"reward": Counter(3, 1.5, 1.25)},
        }
        counters.drop(7)
        assert counters.counts(7) == {}
        assert counters.counts(8)[1]["requests"].n == 100

    def test_a_snapshot_is_replaced_only_by_a_newer_one(self, counters: CounterStore) -> None:
        assert counters.snapshot(9, "rewards") == (float("-inf"), {})
        assert counters.put_snapshot(9, "rewards", 10.0, {1: Counter(10, 4, 4)})
        assert not counters.put_snapshot(9, "rewards", 5.0, {1: Counter(5, 5, 5)})
        assert not counters.put_snapshot(9, "rewards", 10.0, {1: Counter(10, 9, 9)})
        assert counters.snapshot(9, "rewards") == (10.0, {1: Counter(10, 4, 4)})
        assert counters.put_snapshot(9, "rewards", 12.0, {1: Counter(12, 6, 6), 2: Counter()})
        assert counters.snapshot(9, "rewards") == (12.0, {1: Counter(12, 6, 6), 2: Counter()})
        assert counters.snapshot(9, "other") == (float("-inf"), {})

    def test_dropping_a_rollout_forgets_its_snapshots(self, counters: CounterStore) -> None:
        counters.put_snapshot(13, "rewards", 1.0, {1: Counter(1, 1, 1)})
        counters.put_snapshot(14, "rewards", 1.0, {1: Counter(1, 1, 1)})
        counters.drop(13)
        assert counters.snapshot(13, "rewards") == (float("-inf"), {})
        assert counters.snapshot(14, "rewards")[0] == 1.0

    def test_threads_adding_at_once_lose_no_update(self, counters: CounterStore) -> None:
        threads, adds = 4, 50
        barrier = threading.Barrier(threads)

        def work() -> None:
            barrier.wait(timeout=30)
            for _ in range(adds):
                counters.add(15, {(1, "requests"): Counter(1, 2, 4)})

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=60)
        n = float(threads * adds)
        assert counters.counts(15) == {1: {"requests": Counter(n, 2 * n, 4 * n)}}
