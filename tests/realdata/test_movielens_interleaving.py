"""Interleaving on real MovieLens ratings (ml-latest-small): a popularity ranker against a
factorization of each user's earlier ratings, a simulated user clicking the unseen movies they
rated 4 or more later. Interleaving must find the better ranker with fewer sessions than an A/B
test of the same pair. Skipped where ../shared/datasets is absent; CI has it."""

from __future__ import annotations

import numpy as np
import pytest

from loopml.demo._experiments import SESSIONS, MovieLensStudy
from loopml.rollout import preference
from tests.conftest import DATASETS

pytestmark = pytest.mark.realdata


def test_interleaving_finds_the_better_ranker_with_fewer_sessions() -> None:
    if not (DATASETS / "ml-latest-small" / "ratings.csv").exists():
        pytest.skip(f"MovieLens ml-latest-small is not under {DATASETS}")
    study = MovieLensStudy.load(DATASETS)
    assert study.users > 500
    # The factorization is the better ranker offline...
    assert study.precision[1] > study.precision[0]
    rng = np.random.default_rng(2)
    one = study.sessions(2000, rng)
    pref = preference(one["wins_a"], one["wins_b"], one["ties"])
    # ...and simulated users prefer it in the interleaved lists.
    assert pref.preferred == "b" and pref.p_value < 1e-4
    power = study.power(rng, repeats=200)
    need = {m: next((n for n, p in power[m].items() if p >= 0.8), None) for m in power}
    print(f"\nMovieLens: sessions for 80 % power {need}; precision@10 {study.precision}")
    assert need["interleaving"] is not None
    assert need["ab"] is None or need["interleaving"] < need["ab"]
    # the power curves rise with the sessions and interleaving's is above the A/B test's
    for n in SESSIONS[:5]:
        assert power["interleaving"][n] >= power["ab"][n]
