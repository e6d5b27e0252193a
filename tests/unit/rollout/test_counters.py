"""The shared counters of experiments, on SQLite, the real Redis and PostgreSQL servers: increments from
two worker processes at once lose no update (A/B assignments, bandit pulls and rewards), and a
bandit's reward snapshot is replaced only by a newer one, never mixed."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.errors import BackendUnavailable
from loopml.rollout import Counter, RedisCounters, SqlCounters
from loopml.rollout._counters import CounterStore, open_counters
from loopml.spec import PostgresConfig, RedisConfig, SQLiteConfig
from loopml.storage import open_metadata

ARMS = (3, 4, 5)
ADDS = 150  # per worker
WORKERS = 2


def _open(kind: str, where: str) -> Any:
    """A counter store as a serving worker opens it (in its own process)."""
    if kind == "sqlite":
        store = open_metadata(SQLiteConfig(path="meta.db"), root=Path(where))
        return SqlCounters(store), store
    url, name = where.split("|")
    if kind == "postgres":
        pg = open_metadata(PostgresConfig(url=url, schema=name), root=None)  # type: ignore[arg-type]
        return SqlCounters(pg), pg
    counters = RedisCounters(RedisConfig(url=url, prefix=name))
    return counters, counters


def worker(kind: str, where: str, rollout: int, seed: int, barrier: Any) -> None:
    """One worker: A/B assignments and bandit pulls and rewards, flushed one request at a time
    (the worst case: every flush races the other worker's), then snapshots of rewards with
    increasing stamps competing with the other worker's."""
    counters, handle = _open(kind, where)
    rng = random.Random(seed)
    try:
        barrier.wait(timeout=60)
        for i in range(ADDS):
            arm = ARMS[i % len(ARMS)]
            reward = float(rng.random() < 0.5)
            counters.add(
                rollout,
                {
                    (arm, "requests"): Counter(1.0, 1.0, 1.0),
                    (arm, "reward"): Counter(1.0, reward, reward),
                    (arm, "latency_us"): Counter(1.0, 100.0, 10_000.0),
                },
            )
            if i % 10 == 0:
                stamp = float(i * WORKERS + seed)  # the two workers' stamps interleave
                counters.put_snapshot(
                    rollout, "rewards", stamp, {a: Counter(stamp, stamp, 0.0) for a in ARMS}
                )
    finally:
        handle.close()


def _race(kind: str, where: str, rollout: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [
        ctx.Process(target=worker, args=(kind, where, rollout, seed, barrier))
        for seed in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0] * WORKERS
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()


class CounterContract:
    kind = ""

    @pytest.fixture
    def where(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def counters(self, where: str) -> Iterator[CounterStore]:
        c, handle = _open(self.kind, where)
        yield c
        handle.close()

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

    def test_two_workers_lose_no_update(self, counters: CounterStore, where: str) -> None:
        _race(self.kind, where, 11)
        counts = counters.counts(11)
        per_arm = WORKERS * ADDS / len(ARMS)
        for arm in ARMS:
            assert counts[arm]["requests"] == Counter(per_arm, per_arm, per_arm)
            assert counts[arm]["latency_us"] == Counter(per_arm, 100.0 * per_arm, 1e4 * per_arm)
            assert counts[arm]["reward"].n == per_arm
        # Every reward was added exactly once: the sum over both workers' seeded draws.
        expected = 0.0
        for seed in range(WORKERS):
            rng = random.Random(seed)
            expected += sum(float(rng.random() < 0.5) for _ in range(ADDS))
        assert sum(counts[a]["reward"].total for a in ARMS) == expected
        # The newest snapshot either worker wrote won, whole.
        newest = float(max((i * WORKERS + s) for i in range(0, ADDS, 10) for s in range(WORKERS)))
        stamp, snap = counters.snapshot(11, "rewards")
        assert stamp == newest
        assert snap == {a: Counter(newest, newest, 0.0) for a in ARMS}


class TestSQLiteCounters(CounterContract):
    kind = "sqlite"

    @pytest.fixture
    def where(self, tmp_path: Path) -> str:
        return str(tmp_path)


@pytest.mark.redis
class TestRedisCounters(CounterContract):
    kind = "redis"

    @pytest.fixture
    def where(self, redis_prefix: tuple[str, str]) -> str:
        url, prefix = redis_prefix
        return f"{url}|{prefix}"


@pytest.mark.postgres
class TestPostgresCounters(CounterContract):
    kind = "postgres"

    @pytest.fixture
    def where(self, postgres_schema: tuple[str, str]) -> str:
        url, schema = postgres_schema
        return f"{url}|{schema}"


def test_the_project_chooses_its_counter_store(tmp_path: Path) -> None:
    store = open_metadata(SQLiteConfig(path="meta.db"), root=tmp_path)
    try:
        assert isinstance(open_counters(None, store), SqlCounters)
        with pytest.raises(BackendUnavailable, match="cannot reach the rollout counters"):
            open_counters(RedisConfig(url="redis://127.0.0.1:1/0", prefix="x"), store)
    finally:
        store.close()


def test_a_redis_url_in_the_spec_selects_redis() -> None:
    from loopml.spec import StorageSpec

    spec = StorageSpec.model_validate({"counters": "redis://127.0.0.1:6379/0?prefix=exp"})
    assert isinstance(spec.counters, RedisConfig)
    assert spec.counters.prefix == "exp"
    assert StorageSpec().counters is None
    with pytest.raises(ValueError, match="redis"):
        StorageSpec.model_validate({"counters": "sqlite:///x.db"})
