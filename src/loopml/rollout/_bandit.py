"""Bandit policies over model versions: which arm should answer the next request?

An arm is summarized by the :class:`~loopml.rollout.Counter` of the rewards credited to it
(0/1 rewards are ``"binary"``, anything else ``"gaussian"``). A policy turns those counters into
the probability of choosing each arm. Serving computes the probabilities once per refresh from the
shared counters and draws one arm per request with :func:`choose`, logging the arm and its
propensity so that other policies can be evaluated off-policy later.

>>> import numpy as np
>>> from loopml.rollout import Counter
>>> stats = [Counter(100, 5, 5), Counter(100, 9, 9)]
>>> EpsilonGreedy(epsilon=0.2).probabilities(stats, np.random.default_rng(0)).tolist()
[0.1, 0.9]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from loopml.errors import UsageError
from loopml.rollout._decide import counter_of
from loopml.storage import Counter

if TYPE_CHECKING:
    import pyarrow as pa

    from loopml.rollout._records import ExperimentConfig

REWARDS = ("binary", "gaussian")
FLOOR = 1e-4  # Thompson's smallest propensity: off-policy estimates divide by it
PROBABLY_BEST = 0.95  # a bandit's arm is declared the winner at this posterior probability

Keep = Callable[[float, dict[int, Counter]], tuple[float, Mapping[int, Counter]]]
"""Stores the arms' reward counters as the shared snapshot stamped with the labels they count,
and gives back the snapshot stored (a newer one, if another process stored it first)."""


class Policy(Protocol):
    """Turns the arms' reward counters into the probability of choosing each arm."""

    @property
    def name(self) -> str: ...

    def probabilities(self, stats: Sequence[Counter], rng: np.random.Generator) -> np.ndarray:
        """One probability per arm, summing to 1."""
        ...


def _arrays(stats: Sequence[Counter]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not stats:
        raise UsageError("a bandit policy needs at least one arm; got no counters")
    n, total, total_sq = np.array([(s.n, s.total, s.total_sq) for s in stats], dtype=float).T
    return n, total, total_sq


def _pooled_sd(n: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> float:
    """The rewards' sample sd within arms (about the grand mean while every arm has one reward);
    1 until the rewards vary, so that the scale is never zero."""
    seen = n > 0
    df = n.sum() - seen.sum()
    if df > 0:
        var = (total_sq[seen] - total[seen] ** 2 / n[seen]).sum() / df
    elif n.sum() >= 2:
        var = (total_sq.sum() - total.sum() ** 2 / n.sum()) / (n.sum() - 1)
    else:
        var = 0.0
    return math.sqrt(var) if var > 0 else 1.0


def _on_best(scores: np.ndarray) -> np.ndarray:
    best = scores == scores.max()
    return best / best.sum()


def _check_reward(reward: str) -> None:
    if reward not in REWARDS:
        raise UsageError(f"unknown reward kind {reward!r}: use one of {', '.join(REWARDS)}")


@dataclass(frozen=True)
class EpsilonGreedy:
    """``1 - epsilon`` on the best mean (split among ties), ``epsilon`` spread over all arms.
    Arms never credited count as best, so they are explored first."""

    name: ClassVar[str] = "epsilon_greedy"
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise UsageError(f"epsilon must be in [0, 1]; got {self.epsilon!r}")

    def probabilities(self, stats: Sequence[Counter], rng: np.random.Generator) -> np.ndarray:
        n, total, _ = _arrays(stats)
        untried = n == 0
        scores = untried.astype(float) if untried.any() else total / n
        return self.epsilon / len(n) + (1.0 - self.epsilon) * _on_best(scores)


@dataclass(frozen=True)
class UCB1:
    """Probability 1 on the highest ``mean + s * sqrt(c ln N / n)`` (split among ties); arms never
    credited come first. ``s`` is the pooled within-arm sample sd of the rewards, for binary
    rewards too: textbook UCB1 (s = 1, the width of [0, 1]) explores as if every arm were a coin
    flip, and on conversion rates of 5-10 % it loses to epsilon-greedy (about 4x the regret of
    this scaled bonus in the tests' simulation)."""

    name: ClassVar[str] = "ucb1"
    c: float = 2.0

    def __post_init__(self) -> None:
        if not self.c >= 0.0 or math.isinf(self.c):
            raise UsageError(f"c must be a finite number >= 0; got {self.c!r}")

    def probabilities(self, stats: Sequence[Counter], rng: np.random.Generator) -> np.ndarray:
        n, total, total_sq = _arrays(stats)
        untried = n == 0
        if untried.any():
            return _on_best(untried.astype(float))
        bonus = _pooled_sd(n, total, total_sq) * np.sqrt(self.c * math.log(n.sum()) / n)
        return _on_best(total / n + bonus)


@dataclass(frozen=True)
class Thompson:
    """Probability matching: each arm's probability is the share of ``draws`` joint posterior
    samples in which it is best, so drawing an arm from them is Thompson sampling (to within the
    Monte Carlo error) with an exact propensity. Binary rewards: Beta(prior_a + successes, prior_b + failures). Gaussian rewards:
    the mean ~ Normal(mean, s^2 / n) with s the arm's sample sd (the pooled sd while n < 2), and
    Normal(grand mean, (10 * pooled sd)^2) for an arm never credited. Every probability is floored
    at :data:`FLOOR` (then renormalized) so that every propensity is positive."""

    name: ClassVar[str] = "thompson"
    reward: str = "binary"
    draws: int = 2000
    prior_a: float = 1.0
    prior_b: float = 1.0

    def __post_init__(self) -> None:
        _check_reward(self.reward)
        if not isinstance(self.draws, int) or self.draws < 10:
            raise UsageError(f"draws must be an integer >= 10; got {self.draws!r}")
        for option in ("prior_a", "prior_b"):
            value = getattr(self, option)
            if not value > 0 or math.isinf(value):
                raise UsageError(f"{option} must be a finite number > 0; got {value!r}")

    def probabilities(self, stats: Sequence[Counter], rng: np.random.Generator) -> np.ndarray:
        n, total, total_sq = _arrays(stats)
        k = len(n)
        if self.reward == "binary":
            wins = np.clip(total, 0.0, n)
            samples = rng.beta(self.prior_a + wins, self.prior_b + n - wins, size=(self.draws, k))
        else:
            pooled, seen = _pooled_sd(n, total, total_sq), n > 0
            mean = np.divide(total, n, out=np.zeros(k), where=seen)
            var = np.divide(total_sq - n * mean**2, n - 1, out=np.zeros(k), where=n >= 2)
            sd = np.sqrt(np.where(var > 0, var, pooled**2) / np.maximum(n, 1))
            grand = total.sum() / n.sum() if seen.any() else 0.0
            center = np.where(seen, mean, grand)
            samples = rng.normal(center, np.where(seen, sd, 10.0 * pooled), size=(self.draws, k))
        wins_per_arm = np.bincount(samples.argmax(axis=1), minlength=k).astype(float)
        p = np.maximum(wins_per_arm / self.draws, FLOOR)
        return p / p.sum()


_POLICIES: dict[str, type[EpsilonGreedy] | type[UCB1] | type[Thompson]] = {
    "epsilon_greedy": EpsilonGreedy,
    "ucb1": UCB1,
    "thompson": Thompson,
}


def make_policy(name: str, **options: Any) -> Policy:
    """The policy called ``name`` with its options.

    >>> make_policy("thompson", draws=500)
    Thompson(reward='binary', draws=500, prior_a=1.0, prior_b=1.0)
    """
    cls = _POLICIES.get(name)
    if cls is None:
        raise UsageError(
            f"unknown bandit policy {name!r}: use one of {', '.join(_POLICIES)}",
            details={"policy": name},
        )
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(
            f"policy {name!r} has no option {unknown[0]!r}: its options are {', '.join(allowed)}",
            details={"policy": name, "option": unknown[0]},
        )
    return cls(**options)


def evaluate_bandit(
    arms: Sequence[int],
    config: ExperimentConfig,
    values: Mapping[int, np.ndarray],
    table: pa.Table,
    *,
    seed: int,
    keep: Keep | None,
) -> dict[str, Any]:
    """A bandit experiment's look: each arm's rewards (its per-prediction metric ``values``,
    negated when lower is better), the policy's probabilities and, from a Thompson belief, the
    probability that each arm is the best (a winner at :data:`PROBABLY_BEST`), with each arm's
    off-policy value from the logged answers ``table``. ``keep`` (None: nothing kept) stores
    the rewards as the snapshot every worker chooses arms from; the look then reads the snapshot
    kept. ``seed`` seeds the draws of a randomized policy."""
    higher = config.higher_is_better
    rewards = {v: (vals if higher else -vals) for v, vals in values.items()}
    stats = {v: counter_of(rewards[v]) for v in arms}
    labelled = float(sum(s.n for s in stats.values()))
    stored = labelled
    if keep is not None:
        stored, kept = keep(labelled, stats)
        stats = {v: kept.get(v, Counter()) for v in arms}
    policy = make_policy(config.policy, **config.options)
    rng = np.random.default_rng(seed)
    probs = policy.probabilities([stats[v] for v in arms], rng)
    best = max(arms, key=lambda v: stats[v].total / stats[v].n if stats[v].n else -math.inf)
    belief = Thompson(reward="binary" if config.kind == "proportion" else "gaussian")
    p_best = belief.probabilities([stats[v] for v in arms], rng)
    winner = best if float(p_best[list(arms).index(best)]) >= PROBABLY_BEST else None
    arms_out = []
    for i, v in enumerate(arms):
        s = stats[v]
        arms_out.append(
            {
                "version": v,
                "rewards": s.n,
                "mean_reward": None if s.mean is None else (s.mean if higher else -s.mean),
                "probability": float(probs[i]),
                "probability_best": float(p_best[i]),
                "off_policy_value": off_policy_value(table, values, v),
            }
        )
    return {
        "metric": config.metric,
        "policy": config.policy,
        "snapshot_labels": stored,
        "arms_detail": arms_out,
        "decision": "winner" if winner is not None else "continue",
        "winner": winner,
        "reasons": [
            f"version {best} has the best mean reward; probability it is the best "
            f"{float(p_best[list(arms).index(best)]):.1%} (a winner needs {PROBABLY_BEST:.0%})"
        ]
        if any(s.n for s in stats.values())
        else ["no rewards yet: no labelled answers"],
    }


def off_policy_value(table: pa.Table, values: Mapping[int, np.ndarray], arm: int) -> float | None:
    """The self-normalized inverse-propensity estimate of the mean metric had every request
    gone to ``arm``: the logged propensities make off-policy evaluation possible (each answer
    weighs 1/propensity, so the days an arm was rarely chosen count as much as the rest)."""
    if table.num_rows == 0 or "propensity" not in table.column_names:
        return None
    import pyarrow.compute as pc  # here: choosing an arm per request needs no Arrow

    t = table.filter(table["known"])
    version = t["version"].to_numpy(zero_copy_only=False)
    prop = pc.fill_null(t["propensity"], 0.0).to_numpy(zero_copy_only=False).astype(float)
    chosen = (version == arm) & (prop > 0)
    n = len(version)
    vals = values.get(arm)
    if n == 0 or vals is None or len(vals) != int((version == arm).sum()):
        return None
    scores = t["score"].to_numpy(zero_copy_only=False).astype(float)
    own = np.isfinite(scores[version == arm])
    if not own.all():
        return None
    weight = np.zeros(n)
    weight[chosen] = 1.0 / prop[chosen]
    reward = np.zeros(n)
    reward[version == arm] = vals
    # Self-normalized (divided by the weights' sum, not by n): the plain estimate's variance
    # explodes when an arm was chosen at a propensity of 1e-4, as a settled bandit does.
    total = weight.sum()
    return float((weight * reward).sum() / total) if total > 0 else None


def _draw(probabilities: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    cumulative = np.cumsum(probabilities)
    arms = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(arms, len(cumulative) - 1)  # guards u * total landing on the last edge


def choose(probabilities: np.ndarray, rng: np.random.Generator) -> tuple[int, float]:
    """Draw one arm: its index and the probability it had (the propensity to log)."""
    p = np.asarray(probabilities, dtype=float)
    arm = int(_draw(p, rng, 1)[0])
    return arm, float(p[arm])


@dataclass(frozen=True)
class Simulation:
    """How a policy did on simulated arms: pulls per arm and the cumulative expected regret."""

    policy: str
    pulls: np.ndarray
    regret: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "horizon": len(self.regret),
            "pulls": self.pulls.tolist(),
            "final_regret": float(self.regret[-1]),
            "regret": self.regret.tolist(),
        }


def simulate(
    policy: Policy,
    means: Sequence[float],
    *,
    horizon: int,
    rng: np.random.Generator,
    reward: str = "binary",
    sd: float = 1.0,
    batch: int = 1,
) -> Simulation:
    """Run ``policy`` for ``horizon`` pulls on arms with the given means (Bernoulli, or Normal with
    sd ``sd``). As in serving, the probabilities are recomputed every ``batch`` pulls and the
    rewards of a batch are credited after it. Regret is expected regret: best mean minus the
    chosen arm's mean."""
    _check_reward(reward)
    mu = np.asarray(means, dtype=float)
    if mu.ndim != 1 or len(mu) == 0:
        raise UsageError("means must be a non-empty list of numbers, one per arm")
    if reward == "binary" and not np.all((mu >= 0) & (mu <= 1)):
        raise UsageError("binary rewards need means in [0, 1]")
    if horizon < 1 or batch < 1:
        raise UsageError(f"horizon and batch must be >= 1; got {horizon} and {batch}")
    if not sd > 0:
        raise UsageError(f"sd must be > 0; got {sd!r}")
    k = len(mu)
    n, total, total_sq = np.zeros(k), np.zeros(k), np.zeros(k)
    chosen = np.empty(horizon, dtype=np.intp)
    for start in range(0, horizon, batch):
        size = min(batch, horizon - start)
        stats = [Counter(*map(float, arm)) for arm in zip(n, total, total_sq, strict=True)]
        arms = _draw(policy.probabilities(stats, rng), rng, size)
        if reward == "binary":
            rewards = (rng.random(size) < mu[arms]).astype(float)
        else:
            rewards = rng.normal(mu[arms], sd)
        n += np.bincount(arms, minlength=k)
        total += np.bincount(arms, weights=rewards, minlength=k)
        total_sq += np.bincount(arms, weights=rewards**2, minlength=k)
        chosen[start : start + size] = arms
    return Simulation(
        policy=policy.name,
        pulls=np.bincount(chosen, minlength=k),
        regret=np.cumsum(mu.max() - mu[chosen]),
    )
