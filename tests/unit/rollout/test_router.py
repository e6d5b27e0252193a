"""Assignment of requests to arms by a stable hash, and the counter buffer of a worker."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopml.rollout import (
    ArmShares,
    Assignment,
    Counter,
    CounterBuffer,
    ExperimentConfig,
    Plan,
    Rollout,
    Rollouts,
    Router,
    assign,
    positions,
    unit_position,
)
from loopml.spec import SQLiteConfig
from loopml.storage import SqlMetadataStore, open_metadata

T0 = datetime(2024, 1, 1, tzinfo=UTC)
IDS = [f"req-{i}" for i in range(100_000)]


def _rollout(**changes: Any) -> Rollout:
    base = Rollout(
        id=7,
        model="m",
        strategy="canary",
        champion=1,
        challenger=2,
        status="active",
        step=0,
        share=0.05,
        shadow=0.0,
        unit=None,
        started_at=T0,
        step_started_at=T0,
        ended_at=None,
        plan=Plan(steps=[0.05, 0.25, 1.0]),
    )
    return replace(base, **changes)


def _router(rollout: Rollout | None) -> Router:
    router = Router(None, "m")  # route() never reads the store
    router.current = rollout
    return router


# ------------------------------------------------------------------------------ positions


def test_unit_position_is_stable_and_in_unit_interval() -> None:
    values = [unit_position(3, u) for u in ["a", "b", 17, "user-7", ""]]
    assert values == [unit_position(3, u) for u in ["a", "b", 17, "user-7", ""]]
    assert all(0.0 <= v < 1.0 for v in values)
    assert len(set(values)) == len(values)


def test_unit_position_is_a_fixed_value() -> None:
    # Every worker, process and Python version must agree: no salted hash(), no PYTHONHASHSEED.
    assert unit_position(1, "user-7") == 0.09963091826323558
    assert unit_position(42, 12345) == 0.87644778159701
    assert unit_position(42, 12345) == unit_position(42, "12345")  # units are compared as text


def test_positions_differ_between_rollouts() -> None:
    a, b = positions(1, IDS[:1000]), positions(2, IDS[:1000])
    # Independent assignments: about share^2 of units on the challenger in both at share 0.5.
    both = np.mean((a < 0.5) & (b < 0.5))
    assert 0.2 < both < 0.3


def test_positions_equal_unit_position_elementwise() -> None:
    units: list[Any] = [*IDS[:500], 1, 2, 3.5, None]
    pos = positions(11, units)
    assert pos.dtype == np.float64 and pos.shape == (len(units),)
    assert pos.tolist() == [unit_position(11, u) for u in units]
    assert positions(11, []).shape == (0,)


def test_positions_are_uniform() -> None:
    pos = positions(5, IDS)
    assert pos.min() >= 0.0 and pos.max() < 1.0
    counts, _ = np.histogram(pos, bins=10, range=(0, 1))
    assert np.all(np.abs(counts / len(IDS) - 0.1) < 0.01)


# --------------------------------------------------------------------------------- routing


def test_no_rollout_routes_to_the_champion() -> None:
    route = _router(None).route("req-1", {"user": "u"})
    assert (route.version, route.arm, route.shadow, route.rollout) == (
        None,
        "champion",
        False,
        None,
    )


def test_an_ended_rollout_routes_to_the_champion() -> None:
    route = _router(_rollout(status="rolled_back", share=1.0)).route("req-1")
    assert route.arm == "champion" and route.rollout is None


@pytest.mark.parametrize("share", [0.05, 0.25, 1.0])
def test_challenger_share_matches_the_rollout_share(share: float) -> None:
    router = _router(_rollout(share=share))
    routes = [router.route(i) for i in IDS]
    on_challenger = [r for r in routes if r.arm == "challenger"]
    assert abs(len(on_challenger) / len(IDS) - share) < 0.01
    assert all(r.version == 2 and r.rollout == 7 and not r.shadow for r in on_challenger)
    assert all(r.version is None and r.rollout == 7 for r in routes if r.arm == "champion")


def test_units_on_the_challenger_stay_there_as_the_share_grows() -> None:
    ids = IDS[:20_000]
    first, second = _router(_rollout(share=0.05)), _router(_rollout(step=1, share=0.25))
    early = {i for i in ids if first.route(i).arm == "challenger"}
    later = {i for i in ids if second.route(i).arm == "challenger"}
    assert early and early <= later
    assert len(later) > 3 * len(early)


def test_the_unit_field_decides_the_arm() -> None:
    router = _router(_rollout(share=0.5, unit="user"))
    for user in [f"user-{k}" for k in range(200)]:
        arms = {router.route(f"{user}-req-{j}", {"user": user}).arm for j in range(20)}
        assert len(arms) == 1
        # The arm is the unit's, whatever the request id.
        expected = "challenger" if unit_position(7, user) < 0.5 else "champion"
        assert arms == {expected}


def test_a_missing_unit_field_falls_back_to_the_request_id() -> None:
    router = _router(_rollout(share=0.5, unit="user"))
    for rid in IDS[:200]:
        expected = "challenger" if unit_position(7, rid) < 0.5 else "champion"
        assert router.route(rid, {"other": 1}).arm == expected
        assert router.route(rid, None).arm == expected


def test_shadow_marks_about_its_share_and_never_answers_with_the_challenger() -> None:
    router = _router(_rollout(strategy="shadow", share=0.0, shadow=0.3, plan=Plan(steps=[])))
    routes = [router.route(i) for i in IDS]
    assert all(r.arm == "champion" and r.version is None and r.rollout == 7 for r in routes)
    shadowed = sum(r.shadow for r in routes) / len(routes)
    assert abs(shadowed - 0.3) < 0.01


def test_shadow_off_marks_nothing() -> None:
    router = _router(_rollout(strategy="shadow", share=0.0, shadow=0.0, plan=Plan(steps=[])))
    assert not any(router.route(i).shadow for i in IDS[:5000])


def test_a_canary_with_shadow_never_shadows_a_challenger_answer() -> None:
    router = _router(_rollout(share=0.2, shadow=0.5))
    for rid in IDS[:20_000]:
        r = router.route(rid)
        assert not (r.shadow and r.arm == "challenger")


# ------------------------------------------------------------------------------ assignment


def test_a_batch_assignment_equals_each_request_routed_alone() -> None:
    # One rule: the vectorized assignment of many rows, the one-row fast path and Router.route.
    r = _rollout(share=0.3, shadow=0.6, unit="user")
    router = _router(r)
    ids = IDS[:3000]
    users: list[Any] = [f"user-{i % 700}" if i % 5 else None for i in range(len(ids))]
    a = assign(r, ids, champion=1, units=users)
    assert a.rollout == 7 and a.propensity is None
    assert a.version.dtype == np.int64 and a.shadow.dtype == bool
    for i, (rid, user) in enumerate(zip(ids, users, strict=True)):
        route = router.route(rid, {"user": user} if user is not None else {})
        one = assign(r, [rid], champion=1, units=[user])
        assert int(one.version[0]) == int(a.version[i]) == (route.version or 1)
        assert bool(one.shadow[0]) == bool(a.shadow[i]) == route.shadow


def test_an_experiment_assigns_arms_with_their_propensity() -> None:
    r = _rollout(strategy="ab", experiment=ExperimentConfig(arms=[1, 2, 3]))
    shares = ArmShares(7, [1, 2, 3], [0.5, 0.25, 0.25], [0.5, 0.75, 1.0])
    a = assign(r, IDS[:20_000], champion=1, shares=shares)
    assert a.rollout == 7 and a.propensity is not None
    for version, share in ((1, 0.5), (2, 0.25), (3, 0.25)):
        rows = a.rows(version)
        assert abs(len(rows) / 20_000 - share) < 0.02
        assert set(a.propensity[rows].tolist()) == {share}
    assert not a.shadow.any()
    for i, rid in enumerate(IDS[:2000]):  # a one-row request: the same arm, the same chance
        one = assign(r, [rid], champion=1, shares=shares)
        assert one.propensity is not None
        assert (one.version[0], one.propensity[0]) == (a.version[i], a.propensity[i])
    # Shares of another rollout, or arms not loaded: the experiment does not apply.
    stale = ArmShares(6, [1, 2, 3], [0.5, 0.25, 0.25], [0.5, 0.75, 1.0])
    for other in (assign(r, IDS[:10], champion=1, shares=stale), assign(r, IDS[:10], champion=1)):
        assert other.rollout is None and other.versions() == [1]
    assert assign(r, IDS[:10], champion=1, shares=shares, ready=False).rollout is None


def test_a_canary_not_loaded_keeps_its_rows_on_the_champion_still_counted() -> None:
    a = assign(_rollout(share=1.0, shadow=1.0), IDS[:100], champion=1, ready=False)
    assert a.rollout == 7 and a.versions() == [1] and not a.shadow.any()


def test_no_rollout_and_interleaving_assign_everything_to_the_champion() -> None:
    for r in (None, _rollout(status="promoted"), _rollout(strategy="interleave")):
        a = assign(r, IDS[:5], champion=4)
        assert a.rollout is None and a.version.tolist() == [4] * 5 and not a.shadow.any()
    assert assign(None, [], champion=4).versions() == []


def test_assignment_versions_in_order_of_first_row() -> None:
    a = Assignment(7, np.array([3, 1, 3, 2], dtype=np.int64), np.zeros(4, dtype=bool))
    assert a.versions() == [3, 1, 2] and a.rows(3).tolist() == [0, 2]


class _FailingRollouts:
    def __init__(self, first: Rollout) -> None:
        self.first: Rollout | None = first

    def active(self, model: str) -> Rollout | None:
        if self.first is None:
            raise RuntimeError("store down")
        out, self.first = self.first, None
        return out


def test_refresh_keeps_the_last_known_rollout_on_error() -> None:
    r = _rollout()
    router = Router(_FailingRollouts(r), "m")
    assert router.refresh() == r and router.last_error is None
    assert router.refresh() == r
    assert router.last_error == "store down"


# ---------------------------------------------------------------------------- counter buffer


@pytest.fixture
def rollouts(tmp_path: Path) -> Iterator[Rollouts]:
    store: SqlMetadataStore = open_metadata(SQLiteConfig(path="meta.db"), root=tmp_path)
    yield Rollouts(store)
    store.close()


def test_counter_buffer_sums_into_the_store(rollouts: Rollouts) -> None:
    r = rollouts.start("m", strategy="canary", champion=1, challenger=2, steps=[0.1, 1.0])
    buffer = CounterBuffer(rollouts)
    for v in (100.0, 200.0, 300.0):
        buffer.add(r.id, 2, "latency_us", v)
    buffer.add(r.id, 2, "requests")
    buffer.add(r.id, 1, "requests")
    buffer.add(r.id, 1, "requests")
    assert buffer.flush() == 3
    assert buffer.flush() == 0  # nothing pending
    buffer.add(r.id, 1, "requests")
    buffer.flush()
    counts = rollouts.counts(r.id)
    assert counts[2]["latency_us"] == Counter(3, 600.0, 100.0**2 + 200.0**2 + 300.0**2)
    assert counts[2]["latency_us"].mean == 200.0
    assert counts[2]["requests"] == Counter(1, 1, 1)
    assert counts[1]["requests"] == Counter(3, 3, 3)
    assert buffer.flushes == 3 and buffer.errors == 0


class _FlakyRollouts:
    """Rollouts whose add_counts fails the first ``fail`` times."""

    def __init__(self, fail: int = 1) -> None:
        self.fail = fail
        self.added: list[tuple[int, dict[tuple[int, str], Counter]]] = []

    def add_counts(self, rollout_id: int, counts: Mapping[tuple[int, str], Counter]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("store down")
        self.added.append((rollout_id, dict(counts)))


def test_a_failed_flush_keeps_the_counts_for_the_next() -> None:
    fake = _FlakyRollouts(fail=1)
    buffer = CounterBuffer(fake)
    buffer.add(1, 2, "requests")
    buffer.add(1, 2, "latency_us", 5.0)
    assert buffer.flush() == 0
    assert buffer.errors == 1 and fake.added == []
    buffer.add(1, 2, "requests")  # added while the failed counts wait
    assert buffer.flush() == 2
    assert fake.added == [
        (1, {(2, "requests"): Counter(2, 2, 2), (2, "latency_us"): Counter(1, 5.0, 25.0)})
    ]
    assert buffer.flush() == 0 and len(fake.added) == 1


def test_one_failing_rollout_does_not_hold_back_another() -> None:
    fake = _FlakyRollouts(fail=1)
    buffer = CounterBuffer(fake)
    buffer.add(1, 2, "requests")
    buffer.add(9, 2, "requests")
    assert buffer.flush() == 1  # the first rollout failed, the second was written
    assert fake.added == [(9, {(2, "requests"): Counter(1, 1, 1)})]
    assert buffer.flush() == 1
    assert fake.added[-1] == (1, {(2, "requests"): Counter(1, 1, 1)})


def test_counter_buffer_adds_from_many_threads(rollouts: Rollouts) -> None:
    r = rollouts.start("m", strategy="shadow", champion=1, challenger=2, shadow=1.0)
    buffer = CounterBuffer(rollouts)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            buffer.flush()

    def worker() -> None:
        for _ in range(2000):
            buffer.add(r.id, 1, "requests", 2.0)

    flushing = threading.Thread(target=flusher)
    flushing.start()
    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    flushing.join()
    buffer.flush()
    assert rollouts.counts(r.id)[1]["requests"] == Counter(8000, 16000.0, 32000.0)
