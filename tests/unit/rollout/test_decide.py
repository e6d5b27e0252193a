"""The statistics of a rollout step: per-row losses, looks, the sequential comparison's error
rates (simulated), Wilson bounds and the operational checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loopml.errors import UsageError
from loopml.rollout import (
    Counter,
    compare_losses,
    default_metric,
    look_of,
    ops_checks,
    per_row_loss,
    wilson,
)
from loopml.rollout._decide import EPS

# ------------------------------------------------------------------------------- per_row_loss


def test_log_loss_by_hand() -> None:
    scores = np.array([0.9, 0.2, 0.5, 0.7])
    y = np.array([1, 0, 1, 0])
    expected = [-math.log(0.9), -math.log(0.8), -math.log(0.5), -math.log(0.3)]
    np.testing.assert_allclose(per_row_loss("log_loss", scores, y), expected, rtol=1e-12)


def test_log_loss_clips_certain_wrong_answers() -> None:
    losses = per_row_loss("log_loss", np.array([0.0, 1.0, 1.0, 0.0]), np.array([1, 0, 1, 0]))
    assert np.all(np.isfinite(losses))
    # 1 - EPS is not exact in floating point: both ends clip to about -log(EPS).
    np.testing.assert_allclose(losses[:2], -math.log(EPS), rtol=1e-4)
    assert losses[2] == pytest.approx(0.0, abs=1e-12)
    assert losses[3] == pytest.approx(0.0, abs=1e-12)


def test_brier_by_hand() -> None:
    losses = per_row_loss("brier", np.array([0.9, 0.2, 0.5]), np.array([1, 1, 0]))
    np.testing.assert_allclose(losses, [0.01, 0.64, 0.25])


def test_error_with_default_and_given_threshold() -> None:
    scores = np.array([0.3, 0.5, 0.6, 0.8])
    y = np.array([1, 1, 0, 1])
    # At 0.5 the predictions are 0, 1, 1, 1 (a score at the threshold is positive).
    np.testing.assert_array_equal(per_row_loss("error", scores, y), [1.0, 0.0, 1.0, 0.0])
    # At 0.7 they are 0, 0, 0, 1.
    np.testing.assert_array_equal(
        per_row_loss("error", scores, y, threshold=0.7), [1.0, 1.0, 0.0, 0.0]
    )


def test_squared_and_absolute_error_by_hand() -> None:
    scores = np.array([3.0, -1.0, 2.5])
    y = np.array([1.0, 1.0, 2.5])
    np.testing.assert_allclose(per_row_loss("squared_error", scores, y), [4.0, 4.0, 0.0])
    np.testing.assert_allclose(per_row_loss("absolute_error", scores, y), [2.0, 2.0, 0.0])


def test_unknown_metric_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="hinge"):
        per_row_loss("hinge", np.array([0.5]), np.array([1]))


def test_default_metric() -> None:
    assert default_metric("binary") == "log_loss"
    assert default_metric("regression") == "squared_error"


# ------------------------------------------------------------------------------------ looks


@pytest.mark.parametrize(
    ("n", "look"),
    [(0, None), (99, None), (100, 0), (199, 0), (200, 1), (399, 1), (400, 2), (800, 3)],
)
def test_look_of(n: int, look: int | None) -> None:
    assert look_of(n, 100) == look


def test_too_few_labels_is_no_verdict() -> None:
    cmp = compare_losses(np.ones(99), np.ones(500), margin=0.05, alpha=0.05, min_labels=100)
    assert cmp.verdict == "too_few" and cmp.look is None and cmp.difference is None
    empty = compare_losses(np.array([]), np.array([]), margin=0.05, alpha=0.05, min_labels=10)
    assert empty.verdict == "too_few" and empty.champion_mean is None


def test_each_look_spends_half_the_previous_alpha() -> None:
    rng = np.random.default_rng(0)
    for n, look in [(100, 0), (200, 1), (400, 2)]:
        cmp = compare_losses(
            rng.exponential(size=n), rng.exponential(size=n), margin=0.05, alpha=0.1, min_labels=100
        )
        assert cmp.look == look
        assert cmp.alpha == pytest.approx(0.1 / 2 ** (look + 1))
        assert cmp.margin == pytest.approx(0.05 * cmp.champion_mean)
        d = cmp.to_dict()
        assert d["verdict"] == cmp.verdict and d["n_champion"] == n


# ------------------------------------------------------------------------ simulated error rates

MIN_LABELS = 100
BATCH = 50
GROW_TO = 16 * MIN_LABELS
MARGIN = 0.05
ALPHA = 0.05


def _run_step(rng: np.random.Generator, challenger_scale: float, *, paired: bool) -> str:
    """One rollout step as the controller runs it: labels arrive in batches, the comparison is
    made after every batch, and a verdict is acted on only at a look not spent yet (an
    undecided look is spent). Returns the verdict acted on, or "undecided" at the end."""
    n = GROW_TO
    if paired:
        # The same requests scored by both: a shared difficulty and a little noise per model.
        base = rng.exponential(size=n)
        champion = base * rng.uniform(0.8, 1.2, size=n)
        challenger = challenger_scale * base * rng.uniform(0.8, 1.2, size=n)
    else:
        champion = rng.exponential(size=n)
        challenger = challenger_scale * rng.exponential(size=n)
    spent: set[int] = set()
    for seen in range(BATCH, n + 1, BATCH):
        cmp = compare_losses(
            champion[:seen],
            challenger[:seen],
            margin=MARGIN,
            alpha=ALPHA,
            min_labels=MIN_LABELS,
            paired=paired,
        )
        if cmp.look is None or cmp.look in spent:
            continue
        if cmp.verdict in ("worse", "not_worse"):
            return cmp.verdict
        spent.add(cmp.look)
    return "undecided"


def _rates(challenger_scale: float, *, paired: bool, runs: int = 1000) -> dict[str, float]:
    rng = np.random.default_rng(20240611 + int(paired))
    verdicts = [_run_step(rng, challenger_scale, paired=paired) for _ in range(runs)]
    return {v: verdicts.count(v) / runs for v in ("worse", "not_worse", "undecided")}


@pytest.mark.parametrize("paired", [False, True], ids=["welch", "paired"])
def test_no_difference_is_rarely_called_worse(paired: bool) -> None:
    """A/A: checking after every batch but deciding only at new looks keeps false rollbacks
    under alpha."""
    rates = _rates(1.0, paired=paired)
    print(f"A/A {'paired' if paired else 'welch'}: {rates}")
    assert rates["worse"] <= ALPHA
    if paired:  # the paired differences are tight enough to pass nearly every A/A step
        assert rates["not_worse"] >= 0.9


@pytest.mark.parametrize("paired", [False, True], ids=["welch", "paired"])
def test_worse_by_twice_the_margin_is_rarely_passed(paired: bool) -> None:
    """Truly worse by 2x the margin: false "not_worse" verdicts stay under alpha."""
    rates = _rates(1.0 + 2 * MARGIN, paired=paired)
    print(f"worse by 2x margin {'paired' if paired else 'welch'}: {rates}")
    assert rates["not_worse"] <= ALPHA


def test_deciding_at_every_batch_would_inflate_false_rollbacks() -> None:
    """Why looks exist: acting on the look-0 threshold after every batch (no spending) calls
    an A/A step worse far more often than alpha/2."""
    from statistics import NormalDist

    rng = np.random.default_rng(7)
    z = NormalDist().inv_cdf(1 - ALPHA / 2)
    worse = 0
    runs = 1000
    for _ in range(runs):
        a, b = rng.exponential(size=GROW_TO), rng.exponential(size=GROW_TO)
        for seen in range(MIN_LABELS, GROW_TO + 1, BATCH):
            diff = b[:seen].mean() - a[:seen].mean()
            se = math.sqrt(b[:seen].var(ddof=1) / seen + a[:seen].var(ddof=1) / seen)
            if diff - z * se > 0:
                worse += 1
                break
    assert worse / runs > 2 * ALPHA  # 12% here, against 2.5% for one look


# -------------------------------------------------------------------------------------- power


def _exp(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).exponential(size=n)


def test_clearly_worse_challenger_is_found_worse() -> None:
    cmp = compare_losses(
        _exp(1, 2000), _exp(2, 2000, 1.2), margin=MARGIN, alpha=ALPHA, min_labels=MIN_LABELS
    )
    assert cmp.verdict == "worse"
    assert cmp.lower is not None and cmp.lower > 0
    assert cmp.difference == pytest.approx(cmp.challenger_mean - cmp.champion_mean)


def test_clearly_better_challenger_is_not_worse() -> None:
    cmp = compare_losses(
        _exp(3, 2000), _exp(4, 2000, 0.8), margin=MARGIN, alpha=ALPHA, min_labels=MIN_LABELS
    )
    assert cmp.verdict == "not_worse"
    assert cmp.upper is not None and cmp.margin is not None and cmp.upper < cmp.margin


def test_paired_detects_what_unpaired_cannot_at_the_same_n() -> None:
    """A small extra loss under a large request-to-request spread: the paired differences
    cancel the spread, two independent groups cannot."""
    rng = np.random.default_rng(5)
    n = 400
    base = rng.exponential(size=n)
    champion = base + rng.normal(0, 0.01, size=n)
    challenger = base + 0.03 + rng.normal(0, 0.01, size=n)  # ~3% of the mean loss, < margin
    kw: dict[str, float] = {"margin": 0.01, "alpha": ALPHA, "min_labels": MIN_LABELS}
    paired = compare_losses(champion, challenger, paired=True, **kw)
    unpaired = compare_losses(champion, challenger, paired=False, **kw)
    assert paired.verdict == "worse"
    assert unpaired.verdict == "undecided"
    assert (paired.upper - paired.lower) < (unpaired.upper - unpaired.lower) / 10


def test_paired_with_one_row_has_an_infinite_interval() -> None:
    cmp = compare_losses(
        np.array([1.0]), np.array([2.0]), margin=0.05, alpha=0.05, min_labels=1, paired=True
    )
    assert cmp.verdict == "undecided" and cmp.upper == math.inf
    assert cmp.to_dict()["upper"] is None  # not finite: not written as a number


# ------------------------------------------------------------------------------------- wilson


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (3, 1000), (0, 1)])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_wilson_contains_the_proportion(k: int, n: int, alpha: float) -> None:
    lo, hi = wilson(k, n, alpha)
    tol = 1e-12  # at k = 0 the lower bound is 0 up to rounding
    assert 0.0 <= lo <= k / n + tol and k / n <= hi <= 1.0
    assert lo < hi


def test_wilson_known_values() -> None:
    # 95% Wilson intervals, e.g. Newcombe (1998) / any statistics table.
    lo, hi = wilson(5, 10, 0.05)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = wilson(0, 10, 0.05)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(81, 263, 0.05)
    assert (lo, hi) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))


def test_wilson_narrows_with_n_and_knows_nothing_without_data() -> None:
    assert wilson(0, 0, 0.05) == (0.0, 1.0)
    small = wilson(10, 100, 0.05)
    large = wilson(1000, 10000, 0.05)
    assert large[1] - large[0] < small[1] - small[0]


# ---------------------------------------------------------------------------------- ops checks


def _arm(requests: float, errors: float = 0, latency_us: float | None = None) -> dict[str, Counter]:
    out = {"requests": Counter(requests, requests, requests)}
    if errors:
        out["errors"] = Counter(errors, errors, errors)
    if latency_us is not None:
        out["latency_us"] = Counter(requests, requests * latency_us, requests * latency_us**2)
    return out


OPS: dict[str, float] = {"max_error_rate": 0.01, "max_latency_ratio": 2.0, "alpha": 0.05}


def test_healthy_challenger_has_no_reasons() -> None:
    reasons, numbers = ops_checks(_arm(1000, 1, 100.0), _arm(1000, 2, 120.0), **OPS)
    assert reasons == []
    assert numbers["requests"] == {"champion": 1000, "challenger": 1000}
    assert numbers["latency"]["ratio"] == pytest.approx(1.2)


def test_high_error_rate_needs_enough_requests() -> None:
    # 20% errors: far above 1%, but 10 requests are too few to act on.
    few, _ = ops_checks(_arm(10), _arm(10, 2), **OPS)
    assert few == []
    many, numbers = ops_checks(_arm(200), _arm(200, 40), **OPS)
    assert len(many) == 1 and "error rate" in many[0]
    assert numbers["error_rate"]["challenger"] == pytest.approx(0.2)
    assert numbers["error_rate"]["bounds"][0] > 0.01


def test_error_rate_just_over_the_limit_is_not_enough() -> None:
    # 1.5% against a 1% limit over 200 requests: the lower bound is still under the limit.
    reasons, _ = ops_checks(_arm(200), _arm(200, 3), **OPS)
    assert reasons == []


def test_slow_challenger_is_flagged() -> None:
    reasons, numbers = ops_checks(_arm(100, latency_us=100.0), _arm(100, latency_us=250.0), **OPS)
    assert len(reasons) == 1 and "latency" in reasons[0] and "2.5x" in reasons[0]
    assert numbers["latency"]["ratio"] == pytest.approx(2.5)


def test_latency_needs_enough_requests_on_both_arms() -> None:
    reasons, numbers = ops_checks(_arm(10, latency_us=100.0), _arm(100, latency_us=900.0), **OPS)
    assert reasons == [] and "latency" not in numbers


def test_no_counters_at_all() -> None:
    reasons, numbers = ops_checks({}, {}, **OPS)
    assert reasons == []
    assert numbers["error_rate"]["challenger"] is None


def test_a_perfect_champion_can_be_matched() -> None:
    # Zero loss gives a zero margin; a challenger just as perfect is not worse.
    zeros = np.zeros(200)
    assert compare_losses(zeros, zeros, margin=0.05, alpha=0.05, min_labels=50).verdict == (
        "not_worse"
    )


def test_a_zero_min_labels_counts_from_one() -> None:
    assert look_of(0, 0) is None
    assert look_of(4, 0) == 2
