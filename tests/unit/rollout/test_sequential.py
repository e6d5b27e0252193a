"""Always-valid A/B statistics: error rates under continuous peeking (simulated), power at the
reported sample size, simultaneous coverage of the confidence sequence, sample sizes by hand, and
the decision over several arms."""

from __future__ import annotations

import doctest
import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from loopml.errors import UsageError
from loopml.rollout import Counter, _sequential
from loopml.rollout._sequential import (
    always_valid_p,
    compare_arms,
    estimate,
    msprt,
    radius,
    sample_size,
    sequential_test,
)

ALPHA = 0.05
EVERY = 100  # units per arm between looks
Z975 = NormalDist().inv_cdf(0.975)


def _proportion_paths(
    rng: np.random.Generator, p_control: float, p_treatment: float, experiments: int, looks: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(theta_hat, V)`` of shape (experiments, looks): both arms grow by EVERY units a look."""
    n = EVERY * np.arange(1, looks + 1)
    c = rng.binomial(EVERY, p_control, size=(experiments, looks)).cumsum(axis=1)
    t = rng.binomial(EVERY, p_treatment, size=(experiments, looks)).cumsum(axis=1)
    return estimate("proportion", (n, c, c), (n, t, t))


def _mean_paths(
    rng: np.random.Generator, mu_control: float, mu_treatment: float, experiments: int, looks: int
) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`_proportion_paths`, for normal values with sd 1 (kept as counters)."""
    n = EVERY * np.arange(1, looks + 1)
    arms = []
    for mu in (mu_control, mu_treatment):
        x = rng.normal(mu, 1.0, size=(experiments, looks, EVERY))
        arms.append((n, x.sum(axis=2).cumsum(axis=1), (x * x).sum(axis=2).cumsum(axis=1)))
    return estimate("mean", arms[0], arms[1])


def _counter(n: int, p: float) -> Counter:
    k = round(n * p)
    return Counter(n, k, k)


# -------------------------------------------------------------------- error rates (simulated)


@pytest.mark.parametrize(
    ("kind", "effect"),
    [("proportion", 0.03), ("mean", 0.1)],
)
def test_aa_false_positive_rate_under_continuous_peeking(kind: str, effect: float) -> None:
    # 1,000 A/A experiments, looked at every 100 units per arm up to 5,000, stopping at the
    # first rejection: the mSPRT keeps alpha, stopping at the first fixed-horizon p < 0.05 does not.
    rng = np.random.default_rng(20240501)
    if kind == "proportion":
        theta, v = _proportion_paths(rng, 0.3, 0.3, 1000, 50)
    else:
        theta, v = _mean_paths(rng, 1.0, 1.0, 1000, 50)
    sequential = (always_valid_p(theta, v, effect**2) <= ALPHA).any(axis=1).mean()
    naive = (np.abs(theta / np.sqrt(v)) >= Z975).any(axis=1).mean()
    assert sequential <= ALPHA
    assert naive > 0.15
    # A single fixed-horizon look (the last one) is fine on its own: peeking is what breaks it.
    assert (np.abs(theta[:, -1] / np.sqrt(v[:, -1])) >= Z975).mean() < 0.07


def test_power_at_the_sequential_sample_size() -> None:
    size = sample_size(effect=0.03, baseline=0.30, alpha=ALPHA, power=0.8)
    assert size.per_arm_fixed < size.per_arm_sequential
    looks = math.ceil(size.per_arm_sequential / EVERY)
    rng = np.random.default_rng(7)
    theta, v = _proportion_paths(rng, 0.30, 0.33, 1000, looks)
    reject = always_valid_p(theta, v, 0.03**2) <= ALPHA
    first = reject.argmax(axis=1)
    # Detected: rejected at some look, and the estimate then pointed the right way.
    detected = reject.any(axis=1) & (theta[np.arange(1000), first] > 0)
    assert detected.mean() >= 0.8 - 3 * math.sqrt(0.8 * 0.2 / 1000)


@pytest.mark.parametrize("kind", ["proportion", "mean"])
def test_confidence_sequence_covers_at_every_look(kind: str) -> None:
    rng = np.random.default_rng(11)
    if kind == "proportion":
        truth, effect = 0.03, 0.03
        theta, v = _proportion_paths(rng, 0.30, 0.33, 500, 50)
    else:
        truth, effect = -0.1, 0.1
        theta, v = _mean_paths(rng, 1.0, 0.9, 500, 50)
    covered = (np.abs(theta - truth) <= radius(v, effect**2, ALPHA)).all(axis=1)
    assert covered.mean() >= 1 - ALPHA


# -------------------------------------------------------------------- the statistics by hand


def test_msprt_by_hand() -> None:
    theta, v, tau2 = 0.02, 1e-4, 4e-4
    expected = math.sqrt(v / (v + tau2)) * math.exp(tau2 * theta**2 / (2 * v * (v + tau2)))
    assert float(msprt(theta, v, tau2)) == pytest.approx(expected, rel=1e-12)
    # Overwhelming evidence overflows to inf quietly; its p-value is 0.
    assert float(always_valid_p(1.0, 1e-12, 1e-4)) == 0.0


def test_p_value_and_confidence_sequence_agree() -> None:
    # 0 lies outside the sequence exactly when 1/Lambda <= alpha (the one is the other inverted).
    rng = np.random.default_rng(3)
    theta = rng.normal(0, 0.02, 10_000)
    v = rng.uniform(1e-5, 1e-3, 10_000)
    outside = np.abs(theta) > radius(v, 0.01**2, ALPHA)
    np.testing.assert_array_equal(outside, always_valid_p(theta, v, 0.01**2) <= ALPHA)


def test_pooled_two_proportion_z_by_hand() -> None:
    r = sequential_test(
        Counter(1000, 100, 100), Counter(1200, 150, 150), kind="proportion", effect=0.02, alpha=0.05
    )
    p = 250 / 2200
    z = (150 / 1200 - 100 / 1000) / math.sqrt(p * (1 - p) * (1 / 1000 + 1 / 1200))
    assert r.difference == pytest.approx(0.025)
    assert r.z == pytest.approx(z)
    assert r.p_fixed == pytest.approx(2 * (1 - NormalDist().cdf(abs(z))))
    assert r.low is not None and r.high is not None
    assert r.low < r.difference < r.high


def test_welch_z_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(1.3, 2.0, 500)
    control = Counter(len(a), float(a.sum()), float((a * a).sum()))
    treatment = Counter(len(b), float(b.sum()), float((b * b).sum()))
    r = sequential_test(control, treatment, kind="mean", effect=0.2, alpha=0.05)
    assert r.z == pytest.approx(stats.ttest_ind(b, a, equal_var=False).statistic, rel=1e-9)


def test_guards_against_zero_variance() -> None:
    # Constant arms and all-zero proportions give finite numbers, not ZeroDivisionError.
    r = sequential_test(
        Counter(50, 50, 50), Counter(50, 50, 50), kind="mean", effect=0.1, alpha=0.05
    )
    assert r.difference == 0.0 and r.p_value == 1.0
    r = sequential_test(Counter(200), Counter(200), kind="proportion", effect=0.05, alpha=0.05)
    assert r.p_value == 1.0 and r.low is not None and r.low < 0 < (r.high or 0)
    # One unit per arm is not enough for a variance: nothing is estimated, even with min_n=1.
    r = sequential_test(
        Counter(1, 1, 1), Counter(1, 5, 25), kind="mean", effect=0.1, alpha=0.05, min_n=1
    )
    assert r.difference is None and r.p_value == 1.0


# -------------------------------------------------------------------- sample size


def test_textbook_sample_size() -> None:
    # Baseline 10 %, +2 points, alpha 0.05 two-sided, power 0.8.
    za, zb = NormalDist().inv_cdf(0.975), NormalDist().inv_cdf(0.8)
    p1, p2 = 0.10, 0.12
    pbar = (p1 + p2) / 2
    by_hand = (
        za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / 0.02**2
    size = sample_size(effect=0.02, baseline=0.10)
    assert size.per_arm_fixed == math.ceil(by_hand) == 3841
    assert size.per_arm_fixed < size.per_arm_sequential
    means = sample_size(effect=0.1, kind="mean", sd=1.0)
    assert means.per_arm_fixed == math.ceil(2 * (za + zb) ** 2 / 0.01)
    # More arms: Bonferroni makes each comparison stricter, so more units per arm.
    three = sample_size(effect=0.02, baseline=0.10, arms=3)
    assert three.per_arm_fixed > size.per_arm_fixed
    assert three.per_arm_sequential > size.per_arm_sequential
    assert three.to_dict()["alpha_per_comparison"] == pytest.approx(0.025)


def test_sequential_size_is_the_smallest_that_reaches_power() -> None:
    size = sample_size(effect=0.03, baseline=0.30)
    v = 2 * 0.315 * 0.685
    v_alt = 0.3 * 0.7 + 0.33 * 0.67

    def power(n: int) -> float:
        half = float(radius(v / n, 0.03**2, 0.05))
        sd = math.sqrt(v_alt / n)
        return NormalDist().cdf((0.03 - half) / sd) + NormalDist().cdf((-0.03 - half) / sd)

    assert power(size.per_arm_sequential) >= 0.8 > power(size.per_arm_sequential - 1)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"effect": 0.0, "baseline": 0.1}, "effect"),
        ({"effect": 0.02}, "baseline"),
        ({"effect": 0.02, "baseline": 1.0}, "baseline"),
        ({"effect": 0.2, "baseline": 0.9}, "effect"),
        ({"effect": 0.1, "kind": "mean"}, "sd"),
        ({"effect": 0.1, "kind": "mean", "sd": 0.0}, "sd"),
        ({"effect": 0.02, "baseline": 0.1, "alpha": 0.0}, "alpha"),
        ({"effect": 0.02, "baseline": 0.1, "power": 1.0}, "power"),
        ({"effect": 0.02, "baseline": 0.1, "arms": 1}, "arms"),
        ({"effect": 0.02, "kind": "median"}, "kind"),
    ],
)
def test_sample_size_errors_name_the_argument(kwargs: dict, argument: str) -> None:
    with pytest.raises(UsageError, match=argument) as info:
        sample_size(**kwargs)
    assert info.value.details["argument"] == argument


# -------------------------------------------------------------------- several arms


def test_clear_winner_among_three_arms() -> None:
    counts = {1: _counter(5000, 0.30), 2: _counter(5000, 0.36), 3: _counter(5000, 0.40)}
    result = compare_arms(counts, control=1, kind="proportion", effect=0.03)
    assert result.decision == "winner" and result.winner == 3
    assert result.alpha == pytest.approx(0.025)
    assert [a.better for a in result.arms] == [True, True]
    assert any("best mean" in r for r in result.reasons)
    json.dumps(result.to_dict())


def test_higher_is_better_false_flips_the_winner() -> None:
    counts = {1: _counter(5000, 0.30), 2: _counter(5000, 0.20), 3: _counter(5000, 0.40)}
    up = compare_arms(counts, control=1, kind="proportion", effect=0.03)
    down = compare_arms(counts, control=1, kind="proportion", effect=0.03, higher_is_better=False)
    assert (up.winner, down.winner) == (3, 2)
    assert [a.better for a in down.arms] == [True, False]


def test_clear_loser_keeps_the_control() -> None:
    counts = {1: _counter(5000, 0.40), 2: _counter(5000, 0.30), 3: _counter(5000, 0.31)}
    result = compare_arms(counts, control=1, kind="proportion", effect=0.03)
    assert result.decision == "control" and result.winner is None
    assert all(a.better is False for a in result.arms)


def test_identical_arms_with_many_units_are_no_difference() -> None:
    counts = {1: _counter(1_000_000, 0.300), 2: _counter(1_000_000, 0.3001)}
    result = compare_arms(counts, control=1, kind="proportion", effect=0.01)
    assert result.decision == "no_difference"
    arm = result.arms[0]
    assert arm.low is not None and arm.high is not None and -0.01 < arm.low < arm.high < 0.01
    assert "cannot be better" in result.reasons[0]


def test_worse_and_futile_arms_are_no_difference() -> None:
    # No arm can be better by the effect: one is clearly worse, the other within it.
    counts = {
        1: _counter(1_000_000, 0.30),
        2: _counter(1_000_000, 0.20),
        3: _counter(1_000_000, 0.3001),
    }
    result = compare_arms(counts, control=1, kind="proportion", effect=0.01)
    assert result.decision == "no_difference"


def test_undecided_arms_continue() -> None:
    counts = {1: _counter(500, 0.30), 2: _counter(500, 0.32)}
    result = compare_arms(counts, control=1, kind="proportion", effect=0.03)
    assert result.decision == "continue"
    assert "not decided yet" in result.reasons[0]


def test_below_min_n_continues_and_keeps_the_previous_p() -> None:
    counts = {1: _counter(5000, 0.30), 2: _counter(99, 0.90)}
    result = compare_arms(counts, control=1, kind="proportion", effect=0.03, previous={2: 0.4})
    arm = result.arms[0]
    assert result.decision == "continue"
    assert arm.difference is None and arm.z is None and arm.p_value == 0.4
    assert not arm.significant and arm.better is None
    assert "at least 100" in result.reasons[0]


def test_p_value_is_a_running_minimum() -> None:
    strong = {1: _counter(5000, 0.30), 2: _counter(5000, 0.35)}
    first = compare_arms(strong, control=1, kind="proportion", effect=0.03)
    p1 = first.arms[0].p_value
    assert p1 < 0.05
    # Later the estimate drifts back, yet the evidence already seen still counts.
    weaker = {1: _counter(6000, 0.30), 2: _counter(6000, 0.31)}
    alone = compare_arms(weaker, control=1, kind="proportion", effect=0.03)
    assert alone.arms[0].p_value > 0.05
    later = compare_arms(weaker, control=1, kind="proportion", effect=0.03, previous={2: p1})
    assert later.arms[0].p_value == p1 and later.decision == "winner"
    # And new, stronger evidence lowers a previous p-value.
    assert compare_arms(strong, control=1, kind="proportion", effect=0.03, previous={2: 0.5}).arms[
        0
    ].p_value == pytest.approx(p1)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"control": 9}, "control"),
        ({"effect": -0.1}, "effect"),
        ({"alpha": 1.0}, "alpha"),
        ({"kind": "ratio"}, "kind"),
    ],
)
def test_compare_arms_errors_name_the_argument(kwargs: dict, argument: str) -> None:
    args = {"control": 1, "kind": "proportion", "effect": 0.03, **kwargs}
    with pytest.raises(UsageError, match=argument) as info:
        compare_arms({1: _counter(500, 0.3), 2: _counter(500, 0.3)}, **args)
    assert info.value.details["argument"] == argument


def test_other_argument_errors() -> None:
    with pytest.raises(UsageError, match="counts"):
        compare_arms({1: _counter(500, 0.3)}, control=1, kind="proportion", effect=0.03)
    with pytest.raises(UsageError, match="previous_p"):
        sequential_test(Counter(), Counter(), kind="mean", effect=0.1, alpha=0.05, previous_p=2.0)
    with pytest.raises(UsageError, match="kind='mean'"):
        sequential_test(
            Counter(100, 350.0, 2000.0),
            Counter(100, 30, 30),
            kind="proportion",
            effect=0.1,
            alpha=0.05,
        )


def test_doctests() -> None:
    result = doctest.testmod(_sequential)
    assert result.attempted > 0 and result.failed == 0


def test_an_ab_look_averages_each_unit_first() -> None:
    """A unit seen more than once counts once, by its mean (the test becomes one of means);
    the p-values to keep are named by version."""
    from loopml.rollout._records import ExperimentConfig
    from loopml.rollout._sequential import evaluate_ab

    cfg = ExperimentConfig(kind="proportion", effect=0.1, sample_size={"per_arm_fixed": 50})
    values = {1: np.array([1.0, 0.0, 1.0, 1.0]), 2: np.array([0.0, 1.0])}
    units = {1: np.array(["u", "u", "v", "w"], dtype=object), 2: None}
    out, p_values = evaluate_ab([1, 2], cfg, values, units, previous={"2": 0.5})
    assert out["per_unit"] is True and out["kind"] == "mean"
    assert out["control_n"] == 3 and out["control_mean"] == pytest.approx(2.5 / 3)
    assert set(p_values) == {"2"} and p_values["2"] <= 0.5  # running: never above the last
    flat, _ = evaluate_ab([1, 2], cfg, values, {1: None, 2: None}, previous=None)
    assert flat["per_unit"] is False and flat["kind"] == "proportion" and flat["control_n"] == 4
