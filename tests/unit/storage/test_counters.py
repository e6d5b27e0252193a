"""The counters storage role, on SQLite, the real Redis and PostgreSQL servers and in memory: each
passes the contract in loopml.testing, and on the real backends increments from two worker
processes at once lose no update (A/B assignments, bandit pulls and rewards), and a bandit's
reward snapshot is replaced only by a newer one, never mixed."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopml.errors import BackendUnavailable
from loopml.rollout import RedisCounters, SqlCounters
from loopml.spec import PostgresConfig, RedisConfig, SQLiteConfig
from loopml.storage import Counter, CounterStore, open_counters, open_metadata
from loopml.testing import CounterStoreContract, MemoryCounters

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


class CounterContract(CounterStoreContract):
    kind = ""

    @pytest.fixture
    def where(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def counters(self, where: str) -> Iterator[CounterStore]:
        c, handle = _open(self.kind, where)
        yield c
        handle.close()

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


class TestMemoryCounters(CounterStoreContract):
    @pytest.fixture
    def counters(self) -> MemoryCounters:
        return MemoryCounters()


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
