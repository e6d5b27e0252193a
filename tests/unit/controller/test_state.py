"""The loop's state (compare-and-set on its revision, events in the same transaction) and the
lease that lets one controller act at a time: the contract every backend keeps, on SQLite."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopml.controller import Lease, LoopState, LoopStore
from loopml.errors import ConflictError, UsageError
from loopml.spec import SQLiteConfig
from loopml.storage import SqlMetadataStore, open_metadata

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SHORT = timedelta(seconds=0.5)  # long enough to act within it on a busy machine
LONG = timedelta(minutes=5)


class LoopStateContract:
    """What every metadata backend must do for the loop state and the lease. Subclasses provide
    ``store`` (a fresh store) and ``reopen`` (another store on the same data)."""

    RACERS = 4
    RACES = 3

    @pytest.fixture
    def loops(self, store: SqlMetadataStore) -> LoopStore:
        return LoopStore(store)

    # ------------------------------------------------------------------------- state

    def test_a_loop_that_never_ran_is_idle(self, loops: LoopStore) -> None:
        state = loops.load("m")
        assert (state.model, state.phase, state.cycle, state.data, state.revision) == (
            "m",
            "idle",
            0,
            {},
            0,
        )
        assert loops.events("m") == []

    def test_save_inserts_then_updates(self, loops: LoopStore) -> None:
        first = loops.save(loops.load("m"), phase="training", cycle=1, data={"run": "r1"})
        assert (first.phase, first.cycle, first.data, first.revision) == (
            "training",
            1,
            {"run": "r1"},
            1,
        )
        loaded = loops.load("m")
        assert (loaded.phase, loaded.cycle, loaded.data, loaded.revision) == (
            "training",
            1,
            {"run": "r1"},
            1,
        )
        assert loaded.updated_at.tzinfo is not None
        second = loops.save(loaded, phase="gating")  # cycle and data carried over
        assert (second.phase, second.cycle, second.data, second.revision) == (
            "gating",
            1,
            {"run": "r1"},
            2,
        )
        again = loops.load("m")
        assert (again.phase, again.revision, again.updated_at) == ("gating", 2, second.updated_at)
        third = loops.save(second, phase="idle", cycle=2, data={})
        assert (loops.load("m").phase, loops.load("m").cycle, third.revision) == ("idle", 2, 3)
        assert loops.load("other").revision == 0  # models are independent

    def test_a_stale_state_is_refused_and_writes_no_events(self, loops: LoopStore) -> None:
        state = loops.save(loops.load("m"), phase="training", cycle=1, events=[("a", T0, {})])
        newer = loops.save(state, phase="gating", events=[("b", T0, {})])
        with pytest.raises(ConflictError, match="changed meanwhile"):
            loops.save(state, phase="paused", events=[("stale", T0, {"x": 1})])
        assert loops.load("m").revision == newer.revision and loops.load("m").phase == "gating"
        assert [e.kind for e in loops.events("m")] == ["a", "b"]

    def test_two_first_saves_race_for_the_insert(self, loops: LoopStore) -> None:
        never_ran = loops.load("m")
        loops.save(never_ran, phase="training", cycle=1)
        with pytest.raises(ConflictError):
            loops.save(never_ran, phase="training", cycle=1, events=[("twice", T0, {})])
        assert loops.load("m").revision == 1
        assert loops.events("m") == []

    def test_an_unknown_phase_is_refused(self, loops: LoopStore) -> None:
        with pytest.raises(UsageError, match="phase"):
            loops.save(loops.load("m"), phase="dreaming")
        assert loops.load("m").revision == 0

    def test_events_in_order_with_loop_time_and_detail(self, loops: LoopStore) -> None:
        t1, t2, t3 = T0, T0 + timedelta(hours=1), T0 + timedelta(days=1)
        before = datetime.now(UTC)
        state = loops.save(
            loops.load("m"),
            phase="training",
            cycle=1,
            events=[("triggered", t1, {"why": "schedule"}), ("trained", t2, {"run": "r1"})],
        )
        loops.save(state, phase="idle", cycle=2, events=[("gate", t3, {"passed": False})])
        loops.save(loops.load("other"), phase="training", events=[("triggered", t1, {})])
        events = loops.events("m")
        assert [(e.kind, e.at, e.cycle, e.detail) for e in events] == [
            ("triggered", t1, 1, {"why": "schedule"}),
            ("trained", t2, 1, {"run": "r1"}),
            ("gate", t3, 2, {"passed": False}),
        ]
        assert [e.id for e in events] == sorted(e.id for e in events)
        assert all(
            e.model == "m" and e.recorded_at >= before - timedelta(seconds=1) for e in events
        )
        assert events[0].to_dict()["why"] == "schedule"
        assert events[0].to_dict()["at"] == t1.isoformat()
        # Paging and filtering.
        assert [e.kind for e in loops.events("m", after=events[0].id)] == ["trained", "gate"]
        assert [e.kind for e in loops.events("m", limit=1)] == ["triggered"]
        assert [e.kind for e in loops.events("m", kind="gate")] == ["gate"]
        assert [e.kind for e in loops.events("other")] == ["triggered"]

    def test_state_to_dict(self, loops: LoopStore) -> None:
        state = loops.save(loops.load("m"), phase="canary", cycle=3, data={"rollout": 4})
        d = state.to_dict()
        assert d["phase"] == "canary" and d["data"] == {"rollout": 4} and d["revision"] == 1
        assert isinstance(state, LoopState)

    # ------------------------------------------------------------------------- lease

    def test_only_one_holder_until_expiry(self, store: SqlMetadataStore) -> None:
        a = Lease(store, "loop:m", "a", SHORT)
        b = Lease(store, "loop:m", "b", LONG)
        assert a.current() is None
        assert a.acquire()
        assert not b.acquire()
        current = b.current()
        assert current is not None and current["holder"] == "a" and not current["expired"]
        time.sleep(SHORT.total_seconds() + 0.1)
        current = b.current()
        assert current is not None and current["holder"] == "a" and current["expired"]
        assert b.acquire()  # expired: taken over
        assert not a.acquire()
        current = a.current()
        assert current is not None and current["holder"] == "b"

    def test_the_holder_renews(self, store: SqlMetadataStore) -> None:
        a = Lease(store, "loop:m", "a", SHORT)
        b = Lease(store, "loop:m", "b", SHORT)
        assert a.acquire()
        first = a.current()
        assert first is not None
        # The same holder renewing (here with a longer term) extends its lease past the first
        # expiry; the other holder still cannot take it.
        assert Lease(store, "loop:m", "a", LONG).acquire()
        time.sleep(SHORT.total_seconds() + 0.1)
        assert not b.acquire()
        assert a.acquire()  # renewing an unexpired lease of one's own
        renewed = a.current()
        assert renewed is not None and renewed["holder"] == "a"
        assert renewed["expires_at"] > first["expires_at"]

    def test_release_lets_another_take_it(self, store: SqlMetadataStore) -> None:
        a = Lease(store, "loop:m", "a", LONG)
        b = Lease(store, "loop:m", "b", LONG)
        assert a.acquire() and not b.acquire()
        b.release()  # not the holder: nothing happens
        assert not b.acquire()
        a.release()
        assert a.current() is None
        assert b.acquire()
        assert b.current()["holder"] == "b"

    def test_leases_are_named(self, store: SqlMetadataStore) -> None:
        assert Lease(store, "loop:m", "a", LONG).acquire()
        assert Lease(store, "loop:other", "b", LONG).acquire()

    def test_racing_holders_exactly_one_wins(self, reopen: Callable[[], SqlMetadataStore]) -> None:
        for race in range(self.RACES):
            stores = [reopen() for _ in range(self.RACERS)]
            try:
                won = race_for_lease(stores, f"race-{race}")
                assert len(won) == 1, won
                current = Lease(stores[0], f"race-{race}", "x", LONG).current()
                assert current is not None and current["holder"] == won[0]
            finally:
                for s in stores:
                    s.close()


def race_for_lease(stores: list[SqlMetadataStore], name: str) -> list[str]:
    """One holder per store tries to take the lease at the same moment; the winners."""
    barrier = threading.Barrier(len(stores))

    def take(i: int) -> bool:
        lease = Lease(stores[i], name, f"holder-{i}", LONG)
        barrier.wait(timeout=60)
        return lease.acquire()

    with ThreadPoolExecutor(len(stores)) as pool:
        taken = list(pool.map(take, range(len(stores))))  # re-raises a racer's error
    return [f"holder-{i}" for i, ok in enumerate(taken) if ok]


class TestSQLiteLoopState(LoopStateContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqlMetadataStore]:
        s = open_metadata(SQLiteConfig(path="meta.db"), root=tmp_path)
        yield s
        s.close()

    @pytest.fixture
    def reopen(self, store: SqlMetadataStore, tmp_path: Path) -> Callable[[], SqlMetadataStore]:
        return lambda: open_metadata(SQLiteConfig(path="meta.db"), root=tmp_path)
