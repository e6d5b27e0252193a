"""Sampling: every sampler is checked against the distribution it promises, with fixed seeds.

Frequencies are compared with their exact expectation by chi-square tests at p > 0.001. For
k-subsets drawn without replacement the per-item inclusion counts are negatively correlated, so
:func:`inclusion_pvalue` uses the exact covariance instead of the multinomial one.
"""

from __future__ import annotations

import doctest
import importlib
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin

import loopml.sampling
from loopml.errors import UsageError
from loopml.sampling import (
    Reservoir,
    WeightedReservoir,
    density_ratio,
    effective_sample_size,
    importance_sample,
    simple_random,
    stratified,
    weighted,
)

ALPHA = 0.001


def inclusion_pvalue(counts: np.ndarray, reps: int, k: int) -> float:
    """p-value of "each of N items was in a uniform k-subset with probability k/N", from counts
    over ``reps`` independent subsets.

    One subset's indicator vector has covariance p(1-p) N/(N-1) (I - J/N) with p = k/N: a scaled
    projection of rank N-1, so the scaled sum of squares is chi-square with N-1 degrees of freedom.
    """
    counts = np.asarray(counts, dtype=float)
    n_items = len(counts)
    p = k / n_items
    expected = reps * p
    scale = reps * p * (1 - p) * n_items / (n_items - 1)
    statistic = float(((counts - expected) ** 2).sum() / scale)
    return float(stats.chi2.sf(statistic, n_items - 1))


def multinomial_pvalue(observed: dict[Any, int], probs: dict[Any, float]) -> float:
    """Pearson chi-square p-value of outcome counts against exact probabilities (which sum to 1)."""
    assert set(observed) <= set(probs), set(observed) - set(probs)
    keys = list(probs)
    obs = np.array([observed.get(key, 0) for key in keys], dtype=float)
    exp = np.array([probs[key] for key in keys]) * obs.sum()
    return float(stats.chisquare(obs, exp).pvalue)


def successive_probs(weights: list[float], k: int) -> dict[tuple[int, ...], float]:
    """Exact probability of each ordered k-tuple when drawing k items one at a time, each with
    probability proportional to weight among those not yet drawn."""
    out: dict[tuple[int, ...], float] = {}
    positive = [i for i, w in enumerate(weights) if w > 0]
    for order in itertools.permutations(positive, k):
        prob, left = 1.0, float(sum(weights))
        for i in order:
            prob *= weights[i] / left
            left -= weights[i]
        out[order] = prob
    return out


def unordered(probs: dict[tuple[int, ...], float]) -> dict[frozenset[int], float]:
    out: dict[frozenset[int], float] = {}
    for order, prob in probs.items():
        out[frozenset(order)] = out.get(frozenset(order), 0.0) + prob
    return out


def argument_of(excinfo: pytest.ExceptionInfo[UsageError]) -> str:
    return str(excinfo.value.details["argument"])


# --- simple random ----------------------------------------------------------------------------


def test_simple_random_without_replacement_has_no_duplicates() -> None:
    idx = simple_random(100_000, n=60_000, seed=1)
    assert idx.dtype == np.int64 and len(idx) == 60_000
    assert len(np.unique(idx)) == 60_000 and np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < 100_000
    assert np.array_equal(simple_random(50, n=50, seed=2), np.arange(50))
    assert len(simple_random(1000, frac=0.25, seed=3)) == 250
    assert len(simple_random(50, frac=0.29, seed=3)) == 15  # 14.499999999999998 rounds as 14.5
    assert np.array_equal(simple_random(10, n=4, seed=7), simple_random(10, n=4, seed=7))
    with_replacement = simple_random(10, n=1000, seed=4, replace=True)
    assert len(with_replacement) == 1000 and set(with_replacement) == set(range(10))


def test_simple_random_inclusion_is_uniform() -> None:
    n_rows, k, reps = 50, 10, 3000
    draws = np.concatenate([simple_random(n_rows, n=k, seed=s) for s in range(reps)])
    assert inclusion_pvalue(np.bincount(draws, minlength=n_rows), reps, k) > ALPHA


def test_simple_random_every_subset_equally_likely() -> None:
    # Uniform inclusion alone would pass a random contiguous block; all 20 subsets must be equal.
    reps = 4000
    seen = Counter(tuple(simple_random(6, n=3, seed=s)) for s in range(reps))
    subsets = {c: 1 / 20 for c in itertools.combinations(range(6), 3)}
    assert multinomial_pvalue(seen, subsets) > ALPHA


def test_simple_random_with_replacement_is_uniform_multinomial() -> None:
    draws = simple_random(20, n=40_000, seed=5, replace=True)
    counts = np.bincount(draws, minlength=20)
    assert stats.chisquare(counts).pvalue > ALPHA


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_rows": 10}, "n"),
        ({"n_rows": 10, "n": 2, "frac": 0.5}, "n"),
        ({"n_rows": 10, "n": 11}, "n"),
        ({"n_rows": 10, "n": -1}, "n"),
        ({"n_rows": 10, "n": 2.0}, "n"),
        ({"n_rows": 10, "n": True}, "n"),
        ({"n_rows": 0, "n": 1, "replace": True}, "n"),
        ({"n_rows": 10, "frac": 0.0}, "frac"),
        ({"n_rows": 10, "frac": 1.5}, "frac"),
        ({"n_rows": 10, "frac": -0.2}, "frac"),
        ({"n_rows": -1, "n": 0}, "n_rows"),
        ({"n_rows": 10, "n": 2, "seed": -3}, "seed"),
        ({"n_rows": 10, "n": 2, "seed": 1.5}, "seed"),
    ],
)
def test_simple_random_rejects_bad_arguments(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(UsageError) as excinfo:
        simple_random(**kwargs)
    assert argument_of(excinfo) == argument
    assert argument in str(excinfo.value)


# --- stratified -------------------------------------------------------------------------------


def shuffled_labels(sizes: list[int], seed: int) -> np.ndarray:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize(
    "sizes", [[1, 2, 3, 7, 13, 101], [5, 5, 5], [1] * 7 + [50], [3, 997], [10, 20, 30], [4]]
)
def test_stratified_counts_are_exact_and_proportional(sizes: list[int]) -> None:
    total = sum(sizes)
    labels = shuffled_labels(sizes, seed=len(sizes))
    for n in sorted({0, 1, 2, 7, 17, total // 3, total - 1, total}):
        if not 0 <= n <= total:
            continue
        idx = stratified(labels, n=n, seed=n)
        assert len(idx) == n and len(np.unique(idx)) == n
        counts = np.bincount(labels[idx], minlength=len(sizes))
        shares = [Fraction(n * size, total) for size in sizes]
        for count, share in zip(counts, shares, strict=True):
            assert math.floor(share) <= count <= math.ceil(share), (sizes, n, counts)
        # Hamilton's method: no stratum left at its floor has a larger remainder than one that
        # was rounded up.
        up = [s - math.floor(s) for c, s in zip(counts, shares, strict=True) if c > s]
        down = [s - math.floor(s) for c, s in zip(counts, shares, strict=True) if c < s]
        if up and down:
            assert min(up) >= max(down), (sizes, n, counts)


def test_stratified_frac_rounds_each_stratum_half_up() -> None:
    sizes = [1, 2, 3, 5, 7, 10]
    labels = shuffled_labels(sizes, seed=0)
    counts = np.bincount(labels[stratified(labels, frac=0.5, seed=0)], minlength=len(sizes))
    assert counts.tolist() == [1, 1, 2, 3, 4, 5]
    labels = shuffled_labels([50, 10, 3], seed=1)
    counts = np.bincount(labels[stratified(labels, frac=0.29, seed=0)])
    assert counts.tolist() == [15, 3, 1]  # 50 * 0.29 is 14.499999999999998 in floats
    assert len(stratified(labels, frac=1.0, seed=0)) == len(labels)


@pytest.mark.parametrize(
    "make",
    [
        lambda v: v,
        lambda v: pa.array(v),
        lambda v: pa.chunked_array([v[:50], v[50:]]),
        lambda v: pa.array(v).dictionary_encode(),
        lambda v: pd.Series(v),
        lambda v: np.array(v, dtype=object),
        lambda v: [float("nan") if x is None else x for x in v],
    ],
    ids=["list", "arrow", "chunked", "dictionary", "pandas", "numpy-object", "nan"],
)
def test_stratified_null_is_its_own_stratum(make: Callable[[list[Any]], Any]) -> None:
    values: list[Any] = ["a"] * 60 + ["b"] * 30 + [None] * 10
    order = np.random.default_rng(0).permutation(100)
    values = [values[i] for i in order]
    idx = stratified(make(values), n=10, seed=1)
    picked = Counter("null" if values[i] is None else values[i] for i in idx)
    assert picked == {"a": 6, "b": 3, "null": 1}


def test_stratified_mixed_hashable_labels() -> None:
    labels: list[Any] = [("x", 1)] * 4 + [3] * 4 + ["3"] * 2
    idx = stratified(labels, n=5, seed=0)
    assert Counter(repr(labels[i]) for i in idx) == {"('x', 1)": 2, "3": 2, "'3'": 1}


def test_stratified_min_per_stratum_is_honoured() -> None:
    sizes = [1000, 10, 3, 1]
    labels = shuffled_labels(sizes, seed=3)
    for seed in range(5):
        idx = stratified(labels, n=20, seed=seed, min_per_stratum=5)
        assert np.bincount(labels[idx]).tolist() == [11, 5, 3, 1]
    # Strata raised to the minimum are fixed; the others share the rest proportionally
    # (397 * 10 / 1010 = 3.93 rounds up, 397 * 1000 / 1010 = 393.07 down).
    idx = stratified(labels, n=400, seed=0, min_per_stratum=2)
    assert np.bincount(labels[idx]).tolist() == [393, 4, 2, 1]
    idx = stratified(labels, frac=0.01, seed=0, min_per_stratum=2)
    assert np.bincount(labels[idx]).tolist() == [10, 2, 2, 1]
    with pytest.raises(UsageError) as excinfo:
        stratified(labels, n=5, min_per_stratum=3)
    assert argument_of(excinfo) == "n" and "min_per_stratum" in str(excinfo.value)


def test_stratified_draws_uniformly_within_each_stratum() -> None:
    # Right counts are not enough: the rows inside a stratum must be a uniform subset of it.
    labels = np.array(["a"] * 12 + ["b"] * 8)
    reps = 3000
    draws = np.concatenate([stratified(labels, n=5, seed=s) for s in range(reps)])
    counts = np.bincount(draws, minlength=20)
    assert inclusion_pvalue(counts[:12], reps, 3) > ALPHA
    assert inclusion_pvalue(counts[12:], reps, 2) > ALPHA


def test_stratified_breaks_remainder_ties_fairly() -> None:
    labels = np.repeat([0, 1, 2], 2)
    chosen = Counter(int(labels[stratified(labels, n=1, seed=s)][0]) for s in range(3000))
    assert multinomial_pvalue(chosen, {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}) > ALPHA


def test_stratified_rejects_bad_arguments() -> None:
    labels = ["a", "b", "b"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"n": 4}, "n"),
        ({}, "n"),
        ({"n": 1, "frac": 0.5}, "n"),
        ({"frac": 2.0}, "frac"),
        ({"n": 1, "min_per_stratum": -1}, "min_per_stratum"),
    ]
    for kwargs, argument in cases:
        with pytest.raises(UsageError) as excinfo:
            stratified(labels, **kwargs)
        assert argument_of(excinfo) == argument, kwargs
    for bad in ("abc", 5, np.zeros((2, 2))):
        with pytest.raises(UsageError) as excinfo:
            stratified(bad, n=1)
        assert argument_of(excinfo) == "strata"


# --- weighted ---------------------------------------------------------------------------------

WEIGHTS = [0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 0.5, 0.0]


def test_weighted_with_replacement_matches_weights() -> None:
    idx = weighted(WEIGHTS, n=100_000, seed=0, replace=True)
    counts = np.bincount(idx, minlength=len(WEIGHTS))
    assert counts[0] == 0 and counts[-1] == 0
    total = sum(WEIGHTS)
    probs = {i: w / total for i, w in enumerate(WEIGHTS) if w > 0}
    assert multinomial_pvalue({i: int(counts[i]) for i in probs}, probs) > ALPHA


def test_weighted_without_replacement_first_pick_proportional() -> None:
    firsts = Counter(int(weighted(WEIGHTS, n=1, seed=s)[0]) for s in range(6000))
    total = sum(WEIGHTS)
    assert (
        multinomial_pvalue(firsts, {i: w / total for i, w in enumerate(WEIGHTS) if w > 0}) > ALPHA
    )


def test_weighted_without_replacement_is_successive_sampling() -> None:
    # The pairs must follow sequential proportional draws exactly, not e.g. inclusion ∝ weight.
    w = [1.0, 2.0, 3.0, 4.0, 0.0]
    pairs = Counter(frozenset(int(i) for i in weighted(w, n=2, seed=s)) for s in range(6000))
    assert multinomial_pvalue(pairs, unordered(successive_probs(w, 2))) > ALPHA
    naive = {pair: 1 / 6 for pair in unordered(successive_probs(w, 2))}
    assert multinomial_pvalue(pairs, naive) < ALPHA  # the test can tell a wrong design apart


def test_weighted_zero_weights_never_picked() -> None:
    rng = np.random.default_rng(0)
    w = rng.random(200_000) * (rng.random(200_000) < 0.3)
    positive = np.flatnonzero(w)
    idx = weighted(w, n=len(positive), seed=1)
    assert np.array_equal(idx, positive)
    assert np.all(w[weighted(w, n=50_000, seed=2, replace=True)] > 0)
    assert np.all(w[weighted(pa.array(w), n=1000, seed=3)] > 0)
    tiny = np.array([0.0, 1e-300, 0.0, 1e-310])
    assert weighted(tiny, n=2, seed=0).tolist() == [1, 3]


@pytest.mark.parametrize(
    ("weights", "kwargs", "argument", "message"),
    [
        ([1.0, -0.5, 2.0], {"n": 1}, "weights", "weights[1] is -0.5"),
        ([1.0, float("nan")], {"n": 1}, "weights", "weights[1] is nan"),
        ([1.0, float("inf")], {"n": 1}, "weights", "weights[1] is inf"),
        (pa.array([1.0, None]), {"n": 1}, "weights", "weights[1] is null"),
        (np.ones((2, 2)), {"n": 1}, "weights", "one-dimensional"),
        (["a", "b"], {"n": 1}, "weights", "numbers"),
        ([0.0, 0.0], {"n": 1, "replace": True}, "weights", "all 2 weights are zero"),
        ([0.0, 1.0, 2.0], {"n": 3}, "n", "positive weight"),
        ([1.0, 2.0], {"n": -1}, "n", "at least 0"),
        ([1.0, 2.0], {"n": 1.0}, "n", "integer"),
    ],
)
def test_weighted_rejects_bad_arguments(
    weights: Any, kwargs: dict[str, Any], argument: str, message: str
) -> None:
    with pytest.raises(UsageError) as excinfo:
        weighted(weights, **kwargs)
    assert argument_of(excinfo) == argument
    assert message in str(excinfo.value)


# --- reservoir --------------------------------------------------------------------------------


def reservoir_sample(n_items: int, k: int, seed: int, *, one_by_one: bool = False) -> list[Any]:
    r = Reservoir(k=k, seed=seed)
    if one_by_one:
        for i in range(n_items):
            r.update(i)
    else:
        r.update_many(range(n_items))
    assert r.n_seen_ == n_items
    return r.sample_


def test_reservoir_every_subset_equally_likely() -> None:
    reps = 3500
    seen = Counter(frozenset(reservoir_sample(7, 3, s, one_by_one=True)) for s in range(reps))
    subsets = {frozenset(c): 1 / 35 for c in itertools.combinations(range(7), 3)}
    assert multinomial_pvalue(seen, subsets) > ALPHA


@pytest.mark.parametrize(("n_items", "k", "reps"), [(20, 5, 4000), (2000, 10, 2000)])
def test_reservoir_inclusion_is_k_over_n(n_items: int, k: int, reps: int) -> None:
    counts = np.zeros(n_items)
    for s in range(reps):
        counts[reservoir_sample(n_items, k, seed=s)] += 1
    assert inclusion_pvalue(counts, reps, k) > ALPHA


def test_inclusion_test_catches_biased_reservoirs() -> None:
    # The same test, on two classic mistakes, must reject them.
    def keep_first(n_items: int, k: int, rng: np.random.Generator) -> list[int]:
        return list(range(k))

    def off_by_one(n_items: int, k: int, rng: np.random.Generator) -> list[int]:
        sample = list(range(k))
        for i in range(k + 1, n_items + 1):  # item i (1-based) should enter with k / i
            if rng.random() < k / (i + 1):
                sample[rng.integers(k)] = i - 1
        return sample

    reps, n_items, k = 4000, 20, 5
    for wrong in (keep_first, off_by_one):
        rng = np.random.default_rng(0)
        counts = np.zeros(n_items)
        for _ in range(reps):
            counts[wrong(n_items, k, rng)] += 1
        assert inclusion_pvalue(counts, reps, k) < ALPHA, wrong.__name__


class CountingRng:
    """Wraps a numpy Generator and counts the random numbers drawn through it."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.draws = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.rng, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            out = method(*args, **kwargs)
            self.draws += int(np.size(out))
            return out

        return counted


@pytest.mark.parametrize("source", ["sequence", "iterator"])
def test_reservoir_algorithm_l_draws_few_random_numbers(source: str) -> None:
    n_items, k = (1_000_000 if source == "sequence" else 200_000), 10
    r = Reservoir(k=k, seed=0)
    counter = CountingRng(r._rng)
    r._rng = counter  # type: ignore[assignment]
    if source == "sequence":
        r.update_many(range(n_items))
    else:
        r.update_many(iter(range(n_items)))
    # About 3 draws per replacement and k log(N/k) replacements, against N for Algorithm R.
    expected = 3 * k * math.log(n_items / k)
    assert counter.draws == r.n_draws_
    assert counter.draws < 2 * expected + 20
    assert counter.draws < n_items / 100
    assert len(r.sample_) == k and len(set(r.sample_)) == k and r.n_seen_ == n_items
    # The late part of the stream is represented: Algorithm L does not stop skipping ahead.
    assert max(r.sample_) > n_items // 2


def test_reservoir_update_many_matches_update() -> None:
    expected = Reservoir(k=7, seed=11)
    for i in range(3000):
        expected.update(i)

    def chunks() -> Iterator[Any]:
        yield list(range(5))
        yield np.arange(5, 1000)
        yield iter(range(1000, 2000))
        yield range(2000, 3000)

    r = Reservoir(k=7, seed=11)
    for chunk in chunks():
        r.update_many(chunk)
    assert r.sample_ == expected.sample_ and r.n_seen_ == 3000 == expected.n_seen_
    assert r.n_draws_ == expected.n_draws_


def test_reservoir_short_stream_and_parameters() -> None:
    r = Reservoir(k=5, seed=1)
    r.update_many(["a", "b", "c"])
    assert r.sample_ == ["a", "b", "c"] and r.n_seen_ == 3
    assert (r.k, r.seed) == (5, 1) and repr(r) == "Reservoir(k=5, seed=1)"
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(UsageError) as excinfo:
            Reservoir(k=bad)  # type: ignore[arg-type]
        assert argument_of(excinfo) == "k"
    with pytest.raises(UsageError):
        WeightedReservoir(k=0)


def weighted_reservoir_sample(weights: list[float], k: int, seed: int) -> list[int]:
    r = WeightedReservoir(k=k, seed=seed)
    for i, w in enumerate(weights):
        r.update(i, w)
    assert r.n_seen_ == len(weights)
    return r.sample_


def test_weighted_reservoir_matches_exact_a_res_probabilities() -> None:
    # Ordered pairs by decreasing key: A-Res is successive proportional sampling, exactly.
    w = [1.0, 2.0, 0.0, 3.0, 4.0]
    pairs = Counter(tuple(weighted_reservoir_sample(w, 2, s)) for s in range(6000))
    assert all(2 not in pair for pair in pairs)
    assert multinomial_pvalue(pairs, successive_probs(w, 2)) > ALPHA


def test_weighted_reservoir_inclusion_increases_with_weight() -> None:
    weights = np.arange(30, dtype=float)  # item 0 has weight zero
    counts = np.zeros(30)
    for s in range(2000):
        r = WeightedReservoir(k=5, seed=s)
        r.update_many(range(30), weights)
        counts[r.sample_] += 1
    assert counts[0] == 0
    assert stats.spearmanr(weights[1:], counts[1:]).statistic > 0.95
    assert counts[25:].mean() > 3 * counts[1:6].mean()


def test_weighted_reservoir_update_many_matches_update() -> None:
    w = np.random.default_rng(0).exponential(size=500)
    expected = WeightedReservoir(k=8, seed=4)
    for i, x in enumerate(w):
        expected.update(i, float(x))
    r = WeightedReservoir(k=8, seed=4)
    r.update_many(range(200), w[:200])
    r.update_many(iter(range(200, 500)), pa.array(w[200:]))
    assert r.sample_ == expected.sample_ and r.n_seen_ == 500
    with pytest.raises(UsageError) as excinfo:
        r.update("x", -1.0)
    assert argument_of(excinfo) == "weight"
    with pytest.raises(UsageError) as excinfo:
        r.update_many(["x", "y"], [1.0])
    assert argument_of(excinfo) == "weights"


# --- importance -------------------------------------------------------------------------------

TARGET_MEAN_X, TARGET_SHARE_C = 0.7, 0.5


def gaussian_table(n: int, mean: float, probs: list[float], seed: int, sd: float = 1.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "x": rng.normal(mean, sd, n),
            "colour": rng.choice(["red", "green", "blue"], size=n, p=probs),
        }
    )


@pytest.fixture(scope="module")
def shifted() -> tuple[pa.Table, pa.Table, np.ndarray]:
    reference = gaussian_table(4000, 0.0, [0.6, 0.3, 0.1], seed=1)
    target = gaussian_table(3000, TARGET_MEAN_X, [0.2, 0.3, TARGET_SHARE_C], seed=2)
    return reference, target, density_ratio(reference, target, seed=0)


def f(table: pa.Table) -> np.ndarray:
    """A function of both columns, so both shifts matter: E_target f = 0.7 + 2 * 0.5 = 1.7."""
    blue = table["colour"].to_numpy(zero_copy_only=False) == "blue"
    return table["x"].to_numpy() + 2.0 * blue


TARGET_F = TARGET_MEAN_X + 2.0 * TARGET_SHARE_C


def test_density_ratio_weighted_mean_approximates_target(
    shifted: tuple[pa.Table, pa.Table, np.ndarray],
) -> None:
    reference, _, w = shifted
    assert w.shape == (reference.num_rows,) and w.min() > 0
    assert w.mean() == pytest.approx(1.0)
    values = f(reference)
    unweighted_error = abs(values.mean() - TARGET_F)
    weighted_error = abs(np.mean(values * w) - TARGET_F)
    assert unweighted_error > 1.2
    assert weighted_error < 0.12 and weighted_error < unweighted_error / 10
    blue = reference["colour"].to_numpy(zero_copy_only=False) == "blue"
    assert np.mean(blue * w) == pytest.approx(TARGET_SHARE_C, abs=0.05)


def test_importance_sample_follows_target(shifted: tuple[pa.Table, pa.Table, np.ndarray]) -> None:
    reference, _, w = shifted
    idx = importance_sample(reference.num_rows, w, n=20_000, seed=3)
    sample = reference.take(idx)
    assert np.mean(f(sample)) == pytest.approx(TARGET_F, abs=0.12)
    assert np.mean(sample["x"].to_numpy()) == pytest.approx(TARGET_MEAN_X, abs=0.1)
    assert np.std(sample["x"].to_numpy()) == pytest.approx(1.0, abs=0.1)
    # An unweighted draw from the same rows stays at the reference distribution.
    plain = reference.take(simple_random(reference.num_rows, n=4000, seed=3))
    assert abs(np.mean(f(plain)) - TARGET_F) > 1.2


def test_density_ratio_same_distribution_gives_weights_near_one() -> None:
    a = gaussian_table(3000, 0.0, [0.6, 0.3, 0.1], seed=5)
    b = gaussian_table(3000, 0.0, [0.6, 0.3, 0.1], seed=6)
    w = density_ratio(a, b, seed=0)
    assert effective_sample_size(w) > 0.97 * len(w)


def test_density_ratio_lightgbm_handles_nonlinear_shift() -> None:
    # A narrower target: the log ratio is quadratic in x, out of a linear model's reach.
    reference = gaussian_table(4000, 0.0, [0.6, 0.3, 0.1], seed=7)
    target = gaussian_table(4000, 0.0, [0.6, 0.3, 0.1], seed=8, sd=0.6)
    x2 = reference["x"].to_numpy() ** 2
    expected = 0.36
    linear = np.mean(x2 * density_ratio(reference, target, seed=0))
    trees = np.mean(x2 * density_ratio(reference, target, classifier="lightgbm", seed=0))
    assert abs(trees - expected) < 0.1
    assert abs(linear - expected) > 0.4


class MemoryClassifier(ClassifierMixin, BaseEstimator):
    """Says 0.9 for rows it was trained on and 0.5 for others; counts seen rows it scores."""

    scored_seen: ClassVar[list[int]] = []  # shared by the clones cross-fitting makes

    def fit(self, x: Any, y: Any) -> MemoryClassifier:
        self.classes_ = np.array([0, 1])
        self.seen_ = {row.tobytes() for row in np.asarray(x, dtype=float)}
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        seen = np.array([row.tobytes() in self.seen_ for row in np.asarray(x, dtype=float)])
        MemoryClassifier.scored_seen.append(int(seen.sum()))
        p = np.where(seen, 0.9, 0.5)
        return np.column_stack([1 - p, p])

    def predict(self, x: Any) -> np.ndarray:
        return (self.predict_proba(x)[:, 1] > 0.5).astype(int)


def test_density_ratio_cross_fits() -> None:
    # No row may be scored by a model that was fit on it, or overfit classifiers give extreme
    # weights exactly where they memorized.
    rng = np.random.default_rng(0)
    reference, target = rng.normal(size=(300, 2)), rng.normal(0.5, size=(200, 2))
    MemoryClassifier.scored_seen = []
    w = density_ratio(reference, target, classifier=MemoryClassifier(), seed=0)
    assert len(MemoryClassifier.scored_seen) == 5 and sum(MemoryClassifier.scored_seen) == 0
    assert np.allclose(w, 1.0)


def test_density_ratio_accepts_pandas_and_numpy() -> None:
    reference = gaussian_table(600, 0.0, [0.6, 0.3, 0.1], seed=9)
    target = gaussian_table(500, 0.5, [0.2, 0.3, 0.5], seed=10)
    from_arrow = density_ratio(reference, target, seed=1)
    from_pandas = density_ratio(reference.to_pandas(), target.to_pandas(), seed=1)
    assert np.allclose(from_arrow, from_pandas)
    x_only = density_ratio(reference, target, columns=["x"], seed=1)
    from_numpy = density_ratio(reference["x"].to_numpy(), target["x"].to_numpy(), seed=1)
    assert np.allclose(x_only, from_numpy)
    # Nulls: numeric ones are imputed with an indicator, categorical ones are a category.
    with_nulls = pa.table(
        {
            "x": [
                None if i % 7 == 0 else float(v) for i, v in enumerate(reference["x"].to_numpy())
            ],
            "colour": [
                None if i % 5 == 0 else v for i, v in enumerate(reference["colour"].to_pylist())
            ],
        }
    )
    w = density_ratio(with_nulls, target, seed=1)
    assert np.all(np.isfinite(w)) and w.mean() == pytest.approx(1.0)


def test_density_ratio_prior_correction_and_clip() -> None:
    # Same distribution, four times more reference rows: the odds are about 1/4 everywhere and
    # only the prior correction brings them back to a ratio of about 1.
    a = gaussian_table(4000, 0.0, [0.6, 0.3, 0.1], seed=11)
    b = gaussian_table(1000, 0.0, [0.6, 0.3, 0.1], seed=12)
    calibrated = density_ratio(a, b, clip=(0.8, 1.25), seed=0)
    inside = (calibrated > calibrated.min()) & (calibrated < calibrated.max())
    assert inside.mean() > 0.9
    raw = density_ratio(a, b, clip=(0.8, 1.25), calibrate_prior=False, seed=0)
    assert np.ptp(raw) == 0.0 and np.allclose(raw, 1.0)  # every ratio ~0.25 was clipped to 0.8
    # Clipping bounds the spread of the weights.
    reference = gaussian_table(2000, 0.0, [0.6, 0.3, 0.1], seed=13)
    target = gaussian_table(2000, 2.5, [0.6, 0.3, 0.1], seed=14)
    w = density_ratio(reference, target, clip=(0.1, 10.0), seed=0)
    assert w.max() / w.min() == pytest.approx(100.0)
    unclipped = density_ratio(reference, target, clip=None, seed=0)
    assert unclipped.max() / unclipped.min() > 1000


def test_density_ratio_rejects_bad_arguments() -> None:
    ref = gaussian_table(50, 0.0, [0.6, 0.3, 0.1], seed=0)
    tgt = gaussian_table(50, 0.0, [0.6, 0.3, 0.1], seed=1)
    timed = ref.append_column("t", pa.array(np.arange(50), pa.timestamp("s")))
    cases: list[tuple[Any, Any, dict[str, Any], str]] = [
        (ref, tgt, {"columns": ["nope"]}, "columns"),
        (ref, tgt, {"columns": "x"}, "columns"),
        (ref, tgt, {"columns": []}, "columns"),
        (timed, timed, {}, "columns"),
        (ref, tgt.set_column(0, "x", pa.array(["s"] * 50)), {}, "columns"),
        (ref, tgt, {"clip": (2.0, 1.0)}, "clip"),
        (ref, tgt, {"clip": (0.0, 1.0)}, "clip"),
        (ref, tgt, {"clip": 5.0}, "clip"),
        (ref, tgt, {"classifier": "svm"}, "classifier"),
        (ref, tgt, {"classifier": object()}, "classifier"),
        (ref, tgt, {"n_splits": 1}, "n_splits"),
        (ref, tgt.slice(0, 3), {}, "target"),
        (ref.slice(0, 0), tgt, {}, "reference"),
        ([1.0, 2.0], tgt, {}, "reference"),
        (np.zeros((2, 2, 2)), tgt, {}, "reference"),
    ]
    for reference, target, kwargs, argument in cases:
        with pytest.raises(UsageError) as excinfo:
            density_ratio(reference, target, **kwargs)
        assert argument_of(excinfo) == argument, kwargs
    assert "timestamp" in str(_raised(lambda: density_ratio(timed, timed)))


def _raised(call: Callable[[], Any]) -> UsageError:
    with pytest.raises(UsageError) as excinfo:
        call()
    return excinfo.value


def test_importance_sample_rejects_bad_arguments() -> None:
    assert argument_of_call(lambda: importance_sample(3, [1.0, 2.0], n=2)) == "weights"
    assert argument_of_call(lambda: importance_sample(2, [1.0, -2.0], n=2)) == "weights"
    assert argument_of_call(lambda: importance_sample(2, [1.0, 2.0], n=-2)) == "n"
    assert argument_of_call(lambda: importance_sample(-2, [], n=1)) == "reference_rows"
    # With replacement n may exceed the number of rows.
    assert len(importance_sample(2, [1.0, 0.0], n=5, seed=0)) == 5


def argument_of_call(call: Callable[[], Any]) -> str:
    return str(_raised(call).details["argument"])


def test_effective_sample_size() -> None:
    assert effective_sample_size([1.0] * 10) == pytest.approx(10.0)
    assert effective_sample_size([0.0, 5.0, 0.0]) == pytest.approx(1.0)
    assert effective_sample_size([1.0, 2.0, 3.0]) == pytest.approx(36 / 14)
    assert effective_sample_size([1.0, 1.0, 0.0, 0.0]) == pytest.approx(2.0)
    w = np.random.default_rng(0).exponential(size=1000)
    assert effective_sample_size(w) == pytest.approx(effective_sample_size(w * 1e250))
    assert effective_sample_size(w) == pytest.approx(w.sum() ** 2 / (w**2).sum())
    for bad in ([], [0.0, 0.0], [1.0, -1.0], [float("nan")]):
        with pytest.raises(UsageError) as excinfo:
            effective_sample_size(bad)
        assert argument_of(excinfo) == "weights"


# --- the package ------------------------------------------------------------------------------


def test_public_names() -> None:
    assert sorted(loopml.sampling.__all__) == [
        "Reservoir",
        "WeightedReservoir",
        "density_ratio",
        "effective_sample_size",
        "importance_sample",
        "simple_random",
        "stratified",
        "weighted",
    ]
    for name in loopml.sampling.__all__:
        assert getattr(loopml.sampling, name).__module__.startswith("loopml.sampling._")


@pytest.mark.parametrize(
    "module", ["", "._simple", "._stratified", "._weighted", "._reservoir", "._importance"]
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module("loopml.sampling" + module))
    assert result.failed == 0
