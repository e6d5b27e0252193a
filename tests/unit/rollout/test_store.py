"""Rollouts in the metadata store: the contract every backend keeps (compare-and-set steps and
endings, atomic counters without lost updates), run here on SQLite."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopml.errors import ConflictError, NotFoundError, UsageError
from loopml.rollout import Counter, Rollouts
from loopml.spec import MetadataConfig, SQLiteConfig
from loopml.storage import SqlMetadataStore, open_metadata

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
STEPS = [0.05, 0.25, 0.5, 1.0]
# Each add: one request on the challenger, one latency on the champion.
ADD = {(2, "requests"): Counter(1, 1, 1), (1, "latency_us"): Counter(1, 3.0, 9.0)}


def _canary(rollouts: Rollouts, model: str = "m", **kw: Any) -> Any:
    return rollouts.start(
        model, strategy="canary", champion=1, challenger=2, steps=STEPS, at=T0, **kw
    )


def _check_total(rollouts: Rollouts, rollout_id: int, adds: int) -> None:
    counts = rollouts.counts(rollout_id)
    assert counts[2]["requests"] == Counter(adds, adds, adds)
    assert counts[1]["latency_us"] == Counter(adds, 3.0 * adds, 9.0 * adds)


def add_counts_in_process(
    config: MetadataConfig,
    root: str,
    rollout_id: int,
    adds: int,
    barrier: Any,
) -> None:
    """A serving worker in its own process: open the store, wait for the others, add."""
    store = open_metadata(config, root=Path(root))
    try:
        rollouts = Rollouts(store)
        barrier.wait(timeout=120)
        for _ in range(adds):
            rollouts.add_counts(rollout_id, ADD)
    finally:
        store.close()


class RolloutsContract:
    """What every metadata backend must do for rollouts. Subclasses provide ``store`` (a fresh
    store), ``reopen`` (another store on the same data, as another worker would open it) and
    ``config`` (its config, for child processes); ``tmp_path`` is the project root."""

    THREADS = 4
    ADDS_PER_THREAD = 50
    PROCESSES = 2
    ADDS_PER_PROCESS = 100

    @pytest.fixture
    def rollouts(self, store: SqlMetadataStore) -> Rollouts:
        return Rollouts(store)

    # ------------------------------------------------------------------------- start

    def test_start_a_canary(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts, unit="user", extra={"note": "x"})
        assert (r.model, r.strategy, r.champion, r.challenger) == ("m", "canary", 1, 2)
        assert (r.status, r.step, r.share, r.shadow, r.unit) == ("active", 0, 0.05, 0.0, "user")
        assert r.active and r.steps == STEPS
        assert r.started_at == T0 and r.step_started_at == T0 and r.ended_at is None
        assert r.started_at.tzinfo is not None
        assert r.stored() == {"steps": STEPS, "decisions": [], "note": "x"}
        assert rollouts.active("m") == r == rollouts.get(r.id)
        d = r.to_dict()
        assert d["steps"] == STEPS and d["started_at"] == T0.isoformat() and "note" not in d

    def test_start_a_shadow(self, rollouts: Rollouts) -> None:
        r = rollouts.start("m", strategy="shadow", champion=1, challenger=2, shadow=0.3, at=T0)
        assert (r.strategy, r.share, r.shadow, r.steps) == ("shadow", 0.0, 0.3, [])

    def test_a_second_active_rollout_is_refused(self, rollouts: Rollouts) -> None:
        first = _canary(rollouts)
        with pytest.raises(ConflictError, match="active canary") as info:
            rollouts.start("m", strategy="shadow", champion=1, challenger=3, shadow=1.0)
        assert info.value.details["rollout"] == first.id
        assert rollouts.active("m") == first
        # Another model is independent; after the end, the model may start again.
        assert _canary(rollouts, "other").model == "other"
        rollouts.end(first, "stopped", at=T0, reason="test")
        assert _canary(rollouts).id != first.id

    def test_bad_starts_are_usage_errors(self, rollouts: Rollouts) -> None:
        bad: list[tuple[dict[str, Any], str]] = [
            ({"strategy": "blue-green", "steps": STEPS}, "strategy"),
            ({"strategy": "canary", "steps": []}, "steps"),
            ({"strategy": "canary", "steps": None}, "steps"),
            ({"strategy": "canary", "steps": STEPS, "challenger": 1}, "champion"),
        ]
        for kwargs, match in bad:
            args: dict[str, Any] = {"champion": 1, "challenger": 2, **kwargs}
            with pytest.raises(UsageError, match=match):
                rollouts.start("m", **args)
        assert rollouts.active("m") is None and rollouts.list("m") == []

    def test_unknown_rollout(self, rollouts: Rollouts) -> None:
        with pytest.raises(NotFoundError):
            rollouts.get(999)
        assert rollouts.active("m") is None
        assert rollouts.counts(999) == {}

    # ----------------------------------------------------------------------- advance

    def test_advance_moves_share_and_step(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts)
        at = T0 + timedelta(hours=1)
        moved = rollouts.advance(r, at=at)
        assert (moved.step, moved.share, moved.step_started_at) == (1, 0.25, at)
        assert moved.started_at == T0 and moved.active
        assert rollouts.active("m") == moved

    def test_advance_is_compare_and_set(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts)
        moved = rollouts.advance(r, at=T0 + timedelta(hours=1))
        with pytest.raises(ConflictError, match="moved on"):
            rollouts.advance(r, at=T0 + timedelta(hours=2))  # a stale object: step 0
        assert rollouts.get(r.id) == moved  # the stale advance changed nothing

    def test_advance_past_the_last_step_is_refused(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts)
        for _ in range(len(STEPS) - 1):
            r = rollouts.advance(r, at=T0)
        assert r.share == 1.0
        with pytest.raises(UsageError, match="last step"):
            rollouts.advance(r, at=T0)

    def test_an_ended_rollout_cannot_advance(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts)
        rollouts.end(r, "rolled_back", at=T0, reason="worse")
        with pytest.raises(ConflictError):
            rollouts.advance(r, at=T0)

    # --------------------------------------------------------------------------- end

    def test_end(self, rollouts: Rollouts) -> None:
        for status in ("promoted", "rolled_back", "stopped"):
            r = rollouts.start("m", strategy="shadow", champion=1, challenger=2, shadow=0.5, at=T0)
            at = T0 + timedelta(days=1)
            ended = rollouts.end(r, status, at=at, reason=f"because {status}")
            assert (ended.status, ended.share, ended.shadow) == (status, 0.0, 0.0)
            assert ended.ended_at == at and not ended.active
            assert ended.progress.reason == ended.to_dict()["reason"] == f"because {status}"
            assert rollouts.active("m") is None

    def test_ending_twice_is_refused(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts)
        ended = rollouts.end(r, "promoted", at=T0, reason="good")
        with pytest.raises(ConflictError, match="already ended"):
            rollouts.end(r, "rolled_back", at=T0, reason="late")
        assert rollouts.get(r.id) == ended

    def test_bad_end_status(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts)
        with pytest.raises(UsageError, match="rolled_back"):
            rollouts.end(r, "active", at=T0, reason="x")
        assert rollouts.get(r.id).active

    def test_decisions_accumulate(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts)
        t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
        r = rollouts.advance(r, at=t1, decision={"action": "advance", "numbers": {"z": 1.5}})
        r = rollouts.advance(r, at=t1)  # no decision recorded
        r = rollouts.end(r, "rolled_back", at=t2, reason="worse", decision={"action": "rollback"})
        assert [d.to_dict() for d in r.progress.decisions] == [
            {"at": t1.isoformat(), "step": 0, "action": "advance", "numbers": {"z": 1.5}},
            {"at": t2.isoformat(), "step": 2, "action": "rollback"},
        ]
        assert r.plan.steps == STEPS
        assert r.to_dict()["decisions"] == [d.to_dict() for d in r.progress.decisions]

    def test_ending_a_stale_object_keeps_later_decisions(self, rollouts: Rollouts) -> None:
        stale = _canary(rollouts)
        rollouts.advance(stale, at=T0, decision={"action": "advance"})
        ended = rollouts.end(stale, "stopped", at=T0, reason="by hand")
        assert [d.action for d in ended.progress.decisions] == ["advance"]

    # -------------------------------------------------------------------------- list

    def test_list_is_newest_first(self, rollouts: Rollouts) -> None:
        ids = []
        for challenger in (2, 3, 4):
            r = rollouts.start(
                "m", strategy="shadow", champion=1, challenger=challenger, shadow=1.0, at=T0
            )
            rollouts.end(r, "stopped", at=T0, reason="next")
            ids.append(r.id)
        _canary(rollouts, "other")
        assert [r.id for r in rollouts.list("m")] == ids[::-1]
        assert [r.challenger for r in rollouts.list("m", limit=2)] == [4, 3]
        assert [r.model for r in rollouts.list("other")] == ["other"]
        assert rollouts.list("none") == []

    # ---------------------------------------------------------------------- counters

    def test_counts_add_up(self, rollouts: Rollouts) -> None:
        r, other = _canary(rollouts), _canary(rollouts, "other")
        rollouts.add_counts(r.id, {})  # nothing to add: no transaction, no rows
        assert rollouts.counts(r.id) == {}
        rollouts.add_counts(r.id, {(2, "requests"): Counter(3, 3, 3)})
        rollouts.add_counts(
            r.id,
            {
                (2, "requests"): Counter(2, 2, 2),
                (2, "latency_us"): Counter(2, 300.0, 50_000.0),
                (1, "requests"): Counter(5, 5, 5),
            },
        )
        rollouts.add_counts(other.id, {(2, "requests"): Counter(100, 100, 100)})
        counts = rollouts.counts(r.id)
        assert counts == {
            2: {"requests": Counter(5, 5, 5), "latency_us": Counter(2, 300.0, 50_000.0)},
            1: {"requests": Counter(5, 5, 5)},
        }
        assert counts[2]["latency_us"].mean == 150.0
        assert Counter().mean is None
        assert rollouts.counts(other.id) == {2: {"requests": Counter(100, 100, 100)}}

    def test_threads_lose_no_update(
        self, rollouts: Rollouts, reopen: Callable[[], SqlMetadataStore]
    ) -> None:
        r = _canary(rollouts)
        barrier = threading.Barrier(self.THREADS)

        def worker(_: int) -> None:
            store = reopen()  # each worker has its own engine, as separate processes would
            try:
                mine = Rollouts(store)
                barrier.wait(timeout=60)
                for _ in range(self.ADDS_PER_THREAD):
                    mine.add_counts(r.id, ADD)
            finally:
                store.close()

        with ThreadPoolExecutor(self.THREADS) as pool:
            list(pool.map(worker, range(self.THREADS)))  # re-raises a worker's error
        _check_total(rollouts, r.id, self.THREADS * self.ADDS_PER_THREAD)

    def test_threads_sharing_one_store_lose_no_update(self, rollouts: Rollouts) -> None:
        r = _canary(rollouts)

        def worker(_: int) -> None:
            for _ in range(self.ADDS_PER_THREAD):
                rollouts.add_counts(r.id, ADD)

        with ThreadPoolExecutor(self.THREADS) as pool:
            list(pool.map(worker, range(self.THREADS)))
        _check_total(rollouts, r.id, self.THREADS * self.ADDS_PER_THREAD)

    def test_processes_lose_no_update(
        self, rollouts: Rollouts, config: MetadataConfig, tmp_path: Path
    ) -> None:
        r = _canary(rollouts)
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(self.PROCESSES)
        procs = [
            ctx.Process(
                target=add_counts_in_process,
                args=(config, str(tmp_path), r.id, self.ADDS_PER_PROCESS, barrier),
            )
            for _ in range(self.PROCESSES)
        ]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join(timeout=120)
            assert [p.exitcode for p in procs] == [0] * self.PROCESSES
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
        _check_total(rollouts, r.id, self.PROCESSES * self.ADDS_PER_PROCESS)

    def test_a_row_written_by_the_old_code_reads_and_shows_the_same(
        self, store: SqlMetadataStore
    ) -> None:
        """Rows stored as ``Rollout.data`` dicts (before the typed records) read back: their JSON,
        the CLI's ``--json`` and ``/status`` (``to_dict``) are what the old code showed."""
        from loopml.storage import _tables as t

        old = {
            "steps": [],
            "decisions": [],
            "arms": [1, 2, 3],
            "shares": [0.2, 0.4, 0.4],
            "experiment": {"metric": "error", "kind": "proportion", "higher_is_better": False},
            "result": {"decision": "continue"},
            "p_values": {"2": 0.5, "3": 0.9},
        }
        with store.write() as conn:
            key = conn.execute(
                t.rollouts.insert().values(
                    model="m",
                    strategy="ab",
                    champion=1,
                    challenger=2,
                    status="active",
                    step=0,
                    share=0.0,
                    shadow=0.0,
                    unit=None,
                    started_at=T0,
                    step_started_at=T0,
                    ended_at=None,
                    data=old,
                )
            ).inserted_primary_key
        assert key is not None
        rollouts = Rollouts(store)
        r = rollouts.get(int(key[0]))
        assert r.is_experiment and r.arms == [1, 2, 3] and r.experiment is not None
        assert (r.experiment.metric, r.experiment.higher_is_better) == ("error", False)
        assert r.experiment.policy == "thompson" and r.experiment.alpha == 0.05  # defaults
        assert r.stored() == old
        # to_dict as the old code built it: the columns, then the shown keys of the stored JSON
        shown = ("steps", "decisions", "reason", "arms", "shares", "experiment", "result")
        assert r.to_dict() == {
            "id": r.id,
            "model": "m",
            "strategy": "ab",
            "champion": 1,
            "challenger": 2,
            "status": "active",
            "step": 0,
            "share": 0.0,
            "shadow": 0.0,
            "unit": None,
            "started_at": T0.isoformat(),
            "step_started_at": T0.isoformat(),
            "ended_at": None,
            **{k: v for k, v in old.items() if k in shown},
        }
        # a look recorded on it keeps every other key
        r = rollouts.record(r, result={"decision": "winner"}, p_values={"2": 0.01, "3": 0.9})
        assert r.stored() == {
            **old,
            "result": {"decision": "winner"},
            "p_values": {"2": 0.01, "3": 0.9},
        }


class TestSQLiteRollouts(RolloutsContract):
    @pytest.fixture
    def config(self) -> MetadataConfig:
        return SQLiteConfig(path="meta.db")

    @pytest.fixture
    def store(self, config: MetadataConfig, tmp_path: Path) -> Iterator[SqlMetadataStore]:
        s = open_metadata(config, root=tmp_path)
        yield s
        s.close()

    @pytest.fixture
    def reopen(self, config: MetadataConfig, tmp_path: Path) -> Callable[[], SqlMetadataStore]:
        return lambda: open_metadata(config, root=tmp_path)
