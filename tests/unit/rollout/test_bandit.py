"""Bandit policies over model versions: their probabilities by hand, the propensities serving
logs, and regret on simulated arms (fixed seeds)."""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
import pytest
from scipy import stats

from loopml.errors import UsageError
from loopml.rollout import Counter, _bandit
from loopml.rollout._bandit import (
    FLOOR,
    UCB1,
    EpsilonGreedy,
    Policy,
    Thompson,
    choose,
    make_policy,
    simulate,
)

MEANS = [0.05, 0.07, 0.10]
# Long enough for the asymptotics to show: epsilon-greedy's regret grows linearly (it keeps
# exploring a tenth of the time), UCB1's and Thompson's logarithmically. At 10,000 pulls UCB1 and
# epsilon-greedy are about equal in expectation (44 against 46 over 400 seeds), so the ordering
# is checked at 40,000.
HORIZON = 40_000
RUNS = 10
BATCH = 40  # probabilities refreshed every 40 pulls, as serving refreshes once a second


def _counter(rewards: list[float]) -> Counter:
    r = np.asarray(rewards, dtype=float)
    return Counter(float(len(r)), float(r.sum()), float((r**2).sum()))


def test_doctests() -> None:
    assert doctest.testmod(_bandit).failed == 0


# ------------------------------------------------------------------------------- probabilities


def test_epsilon_greedy_by_hand() -> None:
    rng = np.random.default_rng(0)
    stats_ = [Counter(10, 1, 1), Counter(10, 3, 3), Counter(10, 3, 3), Counter(10, 2, 2)]
    p = EpsilonGreedy(epsilon=0.2).probabilities(stats_, rng)
    np.testing.assert_allclose(p, [0.05, 0.45, 0.45, 0.05])  # the tie splits 0.8
    untried = EpsilonGreedy(epsilon=0.2).probabilities([Counter(10, 9, 9), Counter()], rng)
    np.testing.assert_allclose(untried, [0.1, 0.9])  # never credited: explored first
    assert EpsilonGreedy(epsilon=0.0).probabilities(stats_[:2], rng).tolist() == [0.0, 1.0]


def test_ucb1_untried_first_then_argmax_with_ties_split() -> None:
    rng = np.random.default_rng(0)
    policy = UCB1()
    np.testing.assert_allclose(
        policy.probabilities([Counter(5, 5, 5), Counter(), Counter()], rng), [0, 0.5, 0.5]
    )
    # Same mean, fewer pulls: the bonus favours the less-tried arm, with probability 1.
    p = policy.probabilities([Counter(100, 10, 10), Counter(20, 2, 2)], rng)
    assert p.tolist() == [0.0, 1.0]
    tie = policy.probabilities([Counter(20, 2, 2), Counter(20, 2, 2), Counter(20, 1, 1)], rng)
    np.testing.assert_allclose(tie, [0.5, 0.5, 0.0])


def test_ucb1_bonus_is_in_the_rewards_units() -> None:
    # Scaled by the pooled sd, the choice does not depend on the rewards' units or origin.
    rng = np.random.default_rng(3)
    raw = [rng.normal(m, 1.0, n).tolist() for m, n in ((0.0, 40), (0.3, 15), (0.1, 25))]
    policy = UCB1(c=2.0)
    base = policy.probabilities([_counter(r) for r in raw], rng)
    moved = policy.probabilities([_counter([1000 + 250 * x for x in r]) for r in raw], rng)
    np.testing.assert_array_equal(base, moved)


def test_thompson_probabilities_sum_to_one_and_are_floored() -> None:
    rng = np.random.default_rng(1)
    clear = Thompson().probabilities([Counter(5000, 100, 100), Counter(5000, 900, 900)], rng)
    assert clear.sum() == pytest.approx(1.0)
    assert clear[0] == pytest.approx(FLOOR, rel=0.01)  # never best in 2000 draws, still > 0
    no_data = Thompson().probabilities([Counter()] * 4, rng)
    np.testing.assert_allclose(no_data, 0.25, atol=0.04)
    gaussian = Thompson(reward="gaussian")
    for arms in ([Counter()] * 3, [Counter(1, 2.0, 4.0), Counter()], [_counter([1, 2, 3])] * 2):
        p = gaussian.probabilities(arms, rng)
        assert p.sum() == pytest.approx(1.0)
        assert np.all(p > 0)


@pytest.mark.parametrize(
    "policy",
    [EpsilonGreedy(), UCB1(), Thompson(), Thompson(reward="gaussian")],
    ids=lambda p: p.name + getattr(p, "reward", ""),
)
def test_probabilities_sum_to_one(policy: Policy) -> None:
    rng = np.random.default_rng(2)
    for arms in (
        [Counter()],
        [Counter(), Counter(3, 1, 1)],
        [Counter(50, 5, 5), Counter(60, 9, 9), Counter(55, 7, 7), Counter(52, 6, 6)],
    ):
        p = policy.probabilities(arms, rng)
        assert p.shape == (len(arms),)
        assert p.sum() == pytest.approx(1.0)
        if not isinstance(policy, UCB1):  # UCB1 is deterministic: zeros are expected
            assert np.all(p > 0)


def test_no_arms_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="at least one arm"):
        UCB1().probabilities([], np.random.default_rng(0))


# ------------------------------------------------------------------------------------- choose


def test_choose_returns_the_drawn_arms_probability() -> None:
    rng = np.random.default_rng(4)
    p = np.array([0.0, 0.25, 0.5, 0.25])
    for _ in range(100):
        arm, propensity = choose(p, rng)
        assert propensity == p[arm] > 0


def test_choice_frequencies_match_the_probabilities() -> None:
    rng = np.random.default_rng(5)
    arms = [Counter(200, 20, 20), Counter(200, 26, 26), Counter(200, 24, 24)]
    p = Thompson().probabilities(arms, rng)
    draws = 20_000
    observed = np.bincount([choose(p, rng)[0] for _ in range(draws)], minlength=len(p))
    assert stats.chisquare(observed, p * draws).pvalue > 0.001


# ----------------------------------------------------------------------------- make_policy


def test_make_policy_builds_each_policy() -> None:
    assert make_policy("epsilon_greedy", epsilon=0.2) == EpsilonGreedy(epsilon=0.2)
    assert make_policy("ucb1") == UCB1()
    assert make_policy("thompson", reward="gaussian", draws=100) == Thompson("gaussian", 100)


@pytest.mark.parametrize(
    ("name", "options", "named"),
    [
        ("softmax", {}, "softmax"),
        ("ucb1", {"epsilon": 0.1}, "epsilon"),
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon"),
        ("epsilon_greedy", {"epsilon": -0.1}, "epsilon"),
        ("ucb1", {"c": -1.0}, "c must"),
        ("thompson", {"draws": 5}, "draws"),
        ("thompson", {"reward": "poisson"}, "poisson"),
        ("thompson", {"prior_a": 0.0}, "prior_a"),
    ],
)
def test_make_policy_errors_name_the_offending_option(
    name: str, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(UsageError, match=named):
        make_policy(name, **options)


def test_simulate_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(UsageError, match="means"):
        simulate(UCB1(), [], horizon=10, rng=rng)
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        simulate(UCB1(), [0.5, 1.5], horizon=10, rng=rng)
    with pytest.raises(UsageError, match="horizon"):
        simulate(UCB1(), [0.5], horizon=0, rng=rng)


# ---------------------------------------------------------------------------- simulated arms


def test_policies_on_simulated_bernoulli_arms() -> None:
    """Each policy on Bernoulli arms 5 % / 7 % / 10 %, refreshed every 40 pulls, 10 seeds (one
    test, so that the simulations run once whatever the xdist scheduling)."""
    policies: list[Policy] = [EpsilonGreedy(epsilon=0.1), UCB1(), Thompson()]
    uniform = HORIZON * float(np.mean(max(MEANS) - np.array(MEANS)))  # 1,067: choosing at random
    final = {}
    for policy in policies:
        sims = [
            simulate(policy, MEANS, horizon=HORIZON, rng=np.random.default_rng(seed), batch=BATCH)
            for seed in range(RUNS)
        ]
        pulls = np.mean([s.pulls for s in sims], axis=0)
        regret = np.mean([s.regret for s in sims], axis=0)
        assert pulls.sum() == HORIZON and len(regret) == HORIZON
        # The best arm gets the most traffic.
        assert pulls.argmax() == 2 and pulls[2] / HORIZON > 0.7, (policy.name, pulls)
        # Regret grows sublinearly: less in the second half than in the first, far below random.
        first_half = regret[HORIZON // 2 - 1]
        assert regret[-1] - first_half < first_half, (policy.name, regret[-1], first_half)
        assert regret[-1] < uniform / 3, (policy.name, regret[-1])
        final[policy.name] = regret[-1]
    # Measured (three sets of 10 seeds): epsilon-greedy 120-198, UCB1 68-70, Thompson 29-41.
    assert final["thompson"] < final["epsilon_greedy"], final
    assert final["ucb1"] < final["epsilon_greedy"], final


@pytest.mark.parametrize("policy", [Thompson(reward="gaussian"), UCB1()], ids=["thompson", "ucb1"])
def test_gaussian_rewards_find_the_best_arm(policy: Policy) -> None:
    sims = [
        simulate(
            policy,
            [1.0, 1.2, 1.5],
            horizon=3000,
            rng=np.random.default_rng(seed),
            reward="gaussian",
            sd=2.0,
            batch=10,
        )
        for seed in range(8)
    ]
    share = np.mean([s.pulls / 3000 for s in sims], axis=0)
    assert share.argmax() == 2
    assert share[2] > 0.6


def test_simulation_to_dict() -> None:
    sim = simulate(EpsilonGreedy(), [0.2, 0.4], horizon=50, rng=np.random.default_rng(0), batch=7)
    data = sim.to_dict()
    assert data["policy"] == "epsilon_greedy"
    assert data["horizon"] == 50
    assert sum(data["pulls"]) == 50
    assert data["final_regret"] == pytest.approx(data["regret"][-1])


def test_a_look_chooses_from_the_snapshot_kept() -> None:
    """With ``keep`` the rewards are handed over to be stored, and the look reads what was
    kept (here a newer snapshot another worker stored first); without it nothing is kept."""
    import pyarrow as pa

    from loopml.rollout._bandit import evaluate_bandit
    from loopml.rollout._records import ExperimentConfig

    cfg = ExperimentConfig(metric="error", higher_is_better=False, kind="mean", policy="ucb1")
    values = {1: np.array([1.0, 0.0, 1.0]), 2: np.array([0.0, 0.0])}
    table = pa.table({"version": [1, 1, 1, 2, 2]})
    handed: list[tuple[float, dict[int, Counter]]] = []
    newer = {1: Counter(500, -400, 400), 2: Counter(500, -20, 20)}  # rewards: minus the errors

    def keep(stamp: float, stats: dict[int, Counter]) -> tuple[float, dict[int, Counter]]:
        handed.append((stamp, stats))
        return 1000.0, newer

    out = evaluate_bandit([1, 2], cfg, values, table, seed=3, keep=keep)
    assert handed == [(5.0, {1: Counter(3, -2, 2), 2: Counter(2, 0, 0)})]
    assert out["snapshot_labels"] == 1000.0
    assert [a["rewards"] for a in out["arms_detail"]] == [500, 500]
    assert [a["mean_reward"] for a in out["arms_detail"]] == [0.8, 0.04]  # errors, not rewards
    assert out["winner"] == 2 and out["decision"] == "winner"
    alone = evaluate_bandit([1, 2], cfg, values, table, seed=3, keep=None)
    assert alone["snapshot_labels"] == 5.0 and len(handed) == 1
    assert [a["rewards"] for a in alone["arms_detail"]] == [3, 2]
