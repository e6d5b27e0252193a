"""Experiments benchmark: the statistics of loopml's A/B tests, bandits and interleaving, measured
by simulation with the library's own code (``loopml.rollout._sequential``, ``_bandit`` and
``_interleave``; nothing here re-implements them).

1. A/A: ``--experiments`` simulated experiments of two identical arms (a proportion p = 0.30,
   tau = 0.03, and normal values with mean 1 and sd 1, tau = 0.1), looked at every 100 units per
   arm up to 5,000 per arm, stopping at the first rejection: the always-valid (mSPRT) test beside
   naive peeking at the fixed-horizon p-value (for contrast) and one fixed-horizon look at the end.
2. Power: control 0.30, treatment 0.33 (the declared effect 0.03), power 0.8: the detection rate
   of the always-valid test looked at every 100 units up to ``per_arm_sequential`` per arm, the
   sample sizes per arm (fixed and sequential), and, for contrast, the fixed-horizon test's power
   at ``per_arm_fixed``.
3. Bandits: Bernoulli arms 5 % / 7 % / 10 %, horizon 40,000, probabilities refreshed every 40
   requests (as serving refreshes them, once a second), 20 seeds: epsilon-greedy (0.1), UCB1 and Thompson, and
   uniform random (epsilon-greedy with epsilon 1) for scale.
4. Interleaving against A/B: a simulated catalogue, two rankers of different quality, users who
   click with a position-based model and visit a geometric number of times (the setting of
   tests/unit/rollout/test_interleave.py, printed with the results): the users each method needs
   for 80 % power over a grid of sizes; one visit per user is shown for contrast.

    python benchmarks/experiments.py [--experiments 1000] [--bandit-seeds 20] [--horizon 40000]
                                     [--interleaving-experiments 200] [--seed 0] [--json]

Targets: A/A false-positive rate of the always-valid test <= alpha = 0.05 (both metrics);
detection rate at the sequential sample size >= 0.8 - 3 standard errors; Thompson's and UCB1's
final regret below epsilon-greedy's; for each policy the best arm gets the most traffic and the
regret of the second half of the horizon is below that of the first (sublinear); interleaving
needs fewer users than the A/B test for 80 % power. The exit code is 1 when a target is missed.
The horizon is long enough for the asymptotics to show: measured with 400 seeds, UCB1 and
epsilon-greedy are level at 10,000 requests (final regret 44.4 +- 0.6 against 45.8 +- 2.1;
epsilon-greedy's is heavy-tailed, median 31, when it settles on a wrong arm), so a 10,000
horizon meets or misses that target depending on ``--seed``; from about 40,000 UCB1 is far
ahead (epsilon-greedy keeps exploring a tenth of the time: its regret grows linearly).
About 20 s on two cores with the defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from loopml.rollout._bandit import make_policy, simulate
from loopml.rollout._interleave import credit, preference, team_draft
from loopml.rollout._sequential import always_valid_p, estimate, sample_size

ALPHA = 0.05
EVERY = 100  # units per arm between looks
AA_MAX_N = 5000
AA_CASES = (  # kind, what, control = treatment, tau (the declared effect)
    ("proportion", "proportion p = 0.30", 0.30, 0.03),
    ("mean", "normal, mean 1, sd 1", 1.0, 0.1),
)
BASELINE, EFFECT, POWER = 0.30, 0.03, 0.8
MEANS = (0.05, 0.07, 0.10)
BATCH = 40
POLICIES: tuple[tuple[str, str, dict[str, Any]], ...] = (  # label, policy name, options
    ("epsilon_greedy 0.1", "epsilon_greedy", {"epsilon": 0.1}),
    ("ucb1", "ucb1", {}),
    ("thompson", "thompson", {}),
)
UNIFORM: tuple[str, str, dict[str, Any]] = ("uniform random", "epsilon_greedy", {"epsilon": 1.0})
TARGET_POWER = 0.8
SHOWN_USERS = (50, 100, 200, 300, 500, 700, 1000, 2000, 3000, 5000, 7000, 10000)


# ---------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """One declared target: ``figure op limit`` (a missing figure misses it)."""

    name: str
    figure: float | None
    op: str  # "<=", ">=", "<" or ">"
    limit: float | None

    @property
    def met(self) -> bool:
        if self.figure is None or self.limit is None:
            return False
        a, b = self.figure, self.limit
        return {"<=": a <= b, ">=": a >= b, "<": a < b, ">": a > b}[self.op]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def verdict(target: Target) -> str:
    return "met" if target.met else "MISSED"


def fixed_p(theta: NDArray, v: NDArray) -> NDArray:
    """The fixed-horizon two-sided p-value of ``theta_hat`` with variance ``V``."""
    return 2 * stats.norm.sf(np.abs(theta) / np.sqrt(v))


# ------------------------------------------------------------------------ 1. A/A and 2. power


def paths(
    kind: str,
    rng: np.random.Generator,
    control: float,
    treatment: float,
    experiments: int,
    looks: int,
) -> tuple[NDArray, NDArray]:
    """``(theta_hat, V)`` of shape (experiments, looks) from loopml's ``estimate``: both arms
    grow by EVERY units a look (0/1 values with the given proportions, or normal values with the
    given means and sd 1), kept as counters (n, total, total_sq)."""
    n = EVERY * np.arange(1, looks + 1)
    arms = []
    for mu in (control, treatment):
        if kind == "proportion":
            total = rng.binomial(EVERY, mu, size=(experiments, looks)).cumsum(axis=1)
            arms.append((n, total, total))
        else:
            total = np.empty((experiments, looks))
            total_sq = np.empty((experiments, looks))
            for look in range(looks):  # one look at a time: memory stays (experiments, EVERY)
                x = rng.normal(mu, 1.0, size=(experiments, EVERY))
                total[:, look], total_sq[:, look] = x.sum(axis=1), (x * x).sum(axis=1)
            arms.append((n, total.cumsum(axis=1), total_sq.cumsum(axis=1)))
    return estimate(kind, arms[0], arms[1])


@dataclass(frozen=True)
class AARow:
    kind: str
    what: str
    tau: float
    always_valid: float  # share of A/A experiments rejected at some look
    naive_peeking: float  # share with a fixed-horizon p <= alpha at some look
    one_look: float  # share with a fixed-horizon p <= alpha at the last look alone
    standard_error: float  # of the always-valid rate (binomial)


def aa(rng: np.random.Generator, experiments: int) -> list[AARow]:
    looks = AA_MAX_N // EVERY
    rows = []
    for kind, what, mu, tau in AA_CASES:
        theta, v = paths(kind, rng, mu, mu, experiments, looks)
        p_fixed = fixed_p(theta, v)
        rate = float((always_valid_p(theta, v, tau**2) <= ALPHA).any(axis=1).mean())
        rows.append(
            AARow(
                kind=kind,
                what=what,
                tau=tau,
                always_valid=rate,
                naive_peeking=float((p_fixed <= ALPHA).any(axis=1).mean()),
                one_look=float((p_fixed[:, -1] <= ALPHA).mean()),
                standard_error=math.sqrt(rate * (1 - rate) / experiments),
            )
        )
    return rows


@dataclass(frozen=True)
class Power:
    per_arm_fixed: int
    per_arm_sequential: int
    looked_up_to: int  # units per arm at the last look
    detected: float  # rejected at some look, the estimate then pointing the right way
    mean_units_at_stop: float  # per arm: the first rejection, or the last look
    fixed_power: float  # one fixed-horizon look at per_arm_fixed, for contrast
    limit: float


def power(rng: np.random.Generator, experiments: int) -> Power:
    size = sample_size(effect=EFFECT, baseline=BASELINE, alpha=ALPHA, power=POWER)
    looks = math.ceil(size.per_arm_sequential / EVERY)
    theta, v = paths("proportion", rng, BASELINE, BASELINE + EFFECT, experiments, looks)
    reject = always_valid_p(theta, v, EFFECT**2) <= ALPHA
    ever = reject.any(axis=1)
    first = reject.argmax(axis=1)
    detected = ever & (theta[np.arange(experiments), first] > 0)
    stop = np.where(ever, first + 1, looks) * EVERY

    n = size.per_arm_fixed
    c = rng.binomial(n, BASELINE, experiments)
    t = rng.binomial(n, BASELINE + EFFECT, experiments)
    theta_f, v_f = estimate("proportion", (n, c, c), (n, t, t))
    fixed = (fixed_p(theta_f, v_f) <= ALPHA) & (theta_f > 0)
    return Power(
        per_arm_fixed=size.per_arm_fixed,
        per_arm_sequential=size.per_arm_sequential,
        looked_up_to=looks * EVERY,
        detected=float(detected.mean()),
        mean_units_at_stop=float(stop.mean()),
        fixed_power=float(fixed.mean()),
        limit=POWER - 3 * math.sqrt(POWER * (1 - POWER) / experiments),
    )


# ------------------------------------------------------------------------------- 3. bandits


@dataclass(frozen=True)
class BanditRow:
    label: str
    final_regret: float  # mean over seeds, expected regret (best mean - chosen arm's mean)
    regret_se: float  # standard error of that mean over the seeds
    first_half: float
    second_half: float
    share: list[float]  # traffic share per arm, mean over seeds
    seconds: float  # wall time of all its seeds

    @property
    def best_share(self) -> float:
        return self.share[int(np.argmax(MEANS))]

    @property
    def other_share(self) -> float:
        """The largest traffic share among the other arms."""
        return max(s for i, s in enumerate(self.share) if i != int(np.argmax(MEANS)))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "best_share": self.best_share}


def bandit(
    label: str, name: str, options: dict[str, Any], seed: int, seeds: int, horizon: int
) -> BanditRow:
    policy = make_policy(name, **options)
    start = time.perf_counter()
    sims = [
        simulate(
            policy,
            MEANS,
            horizon=horizon,
            rng=np.random.default_rng([seed, 3, run]),
            batch=BATCH,
        )
        for run in range(seeds)
    ]
    seconds = time.perf_counter() - start
    regret = np.mean([s.regret for s in sims], axis=0)
    half = float(regret[horizon // 2 - 1])
    share = np.mean([s.pulls for s in sims], axis=0) / horizon
    return BanditRow(
        label=label,
        final_regret=float(regret[-1]),
        regret_se=float(np.std([s.regret[-1] for s in sims], ddof=1) / math.sqrt(seeds))
        if seeds > 1
        else math.nan,
        first_half=half,
        second_half=float(regret[-1]) - half,
        share=[round(float(s), 4) for s in share],
        seconds=seconds,
    )


# ---------------------------------------------------------------- 4. interleaving versus A/B


@dataclass(frozen=True)
class Setting:
    """The simulated catalogue, rankers and users (those of the interleaving test)."""

    items: int = 200  # catalogue; latent relevance ~ Beta(1, 3)
    k: int = 10  # items shown
    noise_a: float = 0.05  # ranker A orders by relevance + N(0, noise_a): the better one
    noise_b: float = 0.2  # ranker B: relevance + N(0, noise_b)
    visits: float = 3.0  # visits per user: geometric with this mean (1: exactly one)
    experiments: int = 200
    max_interleaving: int = 1000  # users simulated per experiment
    max_ab: int = 10_000

    def describe(self) -> str:
        users = (
            f"visits per user geometric with mean {self.visits:g} (users differ in activity)"
            if self.visits > 1
            else "one visit per user"
        )
        return (
            f"catalogue of {self.items} items, relevance ~ Beta(1, 3); ranker A orders by "
            f"relevance + N(0, {self.noise_a:g}), ranker B by relevance + N(0, {self.noise_b:g}) "
            f"(A is better); the top {self.k} shown; position-based clicks: rank r examined with "
            f"probability 1/r, clicked with probability its relevance; {users}; "
            f"{self.experiments} experiments, each detecting A at alpha {ALPHA} by its first n "
            f"users; interleaving: team draft, a user's credits summed over visits, sign test; "
            f"A/B: half the users each, clicks per user, fixed-horizon Welch z (two-sided)"
        )


@dataclass(frozen=True)
class Comparison:
    setting: Setting
    interleaving_users: int | None  # first size on the grid with power >= 0.8 (None: not reached)
    ab_users: int | None
    power_interleaving: dict[int, float] = field(default_factory=dict)
    power_ab: dict[int, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.interleaving_users is None or self.ab_users is None:
            return None
        return self.ab_users / self.interleaving_users

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio_ab_to_interleaving": self.ratio}


def first_reaching(power: dict[int, float]) -> int | None:
    return next((n for n, p in sorted(power.items()) if p >= TARGET_POWER), None)


def interleaving_vs_ab(rng: np.random.Generator, s: Setting) -> Comparison:
    """Power of both methods at each size of a common grid: the share of experiments whose first
    n users detect A (prefixes of one run per experiment)."""
    grid = np.geomspace(20, s.max_ab, 40).astype(int) // 2 * 2  # even: the A/B halves
    sizes = np.unique(np.concatenate([grid, [n for n in SHOWN_USERS if n <= s.max_ab]]))
    sizes_i = sizes[sizes <= s.max_interleaving]
    examine = 1.0 / np.arange(1, s.k + 1)
    detected_i = np.zeros(len(sizes_i))
    detected_ab = np.zeros(len(sizes))
    for _ in range(s.experiments):
        relevance = rng.beta(1.0, 3.0, s.items)
        rank_a = np.argsort(-(relevance + rng.normal(0.0, s.noise_a, s.items)))
        rank_b = np.argsort(-(relevance + rng.normal(0.0, s.noise_b, s.items)))
        list_a, list_b = rank_a.tolist(), rank_b.tolist()

        outcome = np.empty(s.max_interleaving, dtype=int)
        for user, n_visits in enumerate(rng.geometric(1.0 / s.visits, s.max_interleaving)):
            total = 0
            for _visit in range(n_visits):
                shown = team_draft(list_a, list_b, k=s.k, rng=rng)
                k = len(shown.items)
                hits = rng.random(k) < examine[:k] * relevance[shown.items]
                total += credit(shown, [i for i, hit in zip(shown.items, hits, strict=True) if hit])
            outcome[user] = np.sign(total)
        wins_a, wins_b = np.cumsum(outcome == 1), np.cumsum(outcome == -1)
        for j, n in enumerate(sizes_i):
            result = preference(int(wins_a[n - 1]), int(wins_b[n - 1]), alpha=ALPHA)
            detected_i[j] += result.preferred == "a"

        half = s.max_ab // 2
        counters = []  # B is the control, A the treatment: theta_hat = A - B
        for ranking in (rank_b[: s.k], rank_a[: s.k]):
            visits = rng.geometric(1.0 / s.visits, half)
            per_visit = (rng.random((visits.sum(), s.k)) < examine * relevance[ranking]).sum(1)
            clicks = np.bincount(
                np.repeat(np.arange(half), visits), weights=per_visit, minlength=half
            )
            m = sizes // 2
            counters.append((m, np.cumsum(clicks)[m - 1], np.cumsum(clicks**2)[m - 1]))
        theta, v = estimate("mean", counters[0], counters[1])
        detected_ab += (fixed_p(theta, v) <= ALPHA) & (theta > 0)

    power_i = dict(zip(sizes_i.tolist(), (detected_i / s.experiments).tolist(), strict=True))
    power_ab = dict(zip(sizes.tolist(), (detected_ab / s.experiments).tolist(), strict=True))
    return Comparison(s, first_reaching(power_i), first_reaching(power_ab), power_i, power_ab)


# ------------------------------------------------------------------------------------ report


def targets_of(
    aa_rows: list[AARow], pw: Power, bandits: list[BanditRow], main: Comparison
) -> list[Target]:
    out = [
        Target(f"A/A {r.kind}: always-valid false-positive rate", r.always_valid, "<=", ALPHA)
        for r in aa_rows
    ]
    out.append(Target("power: detection rate at per_arm_sequential", pw.detected, ">=", pw.limit))
    by = {b.label: b for b in bandits}
    greedy = by["epsilon_greedy 0.1"].final_regret
    for label in ("thompson", "ucb1"):
        out.append(
            Target(
                f"bandits: {label} regret < epsilon-greedy's", by[label].final_regret, "<", greedy
            )
        )
    for b in bandits:
        out.append(
            Target(
                f"bandits: {b.label} best arm share > any other", b.best_share, ">", b.other_share
            )
        )
        out.append(
            Target(
                f"bandits: {b.label} second-half regret < first", b.second_half, "<", b.first_half
            )
        )
    ab = None if main.ab_users is None else float(main.ab_users)
    users = None if main.interleaving_users is None else float(main.interleaving_users)
    out.append(Target("interleaving: users for 80 % power < A/B's", users, "<", ab))
    return out


def show(n: int | None) -> str:
    return "not reached" if n is None else f"{n:,}"


def print_report(
    args: argparse.Namespace,
    aa_rows: list[AARow],
    pw: Power,
    bandits: list[BanditRow],
    uniform: BanditRow,
    comparisons: list[Comparison],
    targets: list[Target],
    times: dict[str, float],
) -> None:
    t = {target.name: target for target in targets}
    print(
        f"1. A/A: {args.experiments:,} experiments of two identical arms, a look every {EVERY} "
        f"units per arm up to {AA_MAX_N:,} ({AA_MAX_N // EVERY} looks), alpha {ALPHA} "
        f"({times['aa']:.1f} s)"
    )
    print(f"{'false-positive rate (rejected at some look)':<56}{'rate':>7}{'s.e.':>7}  target")
    for r in aa_rows:
        target = t[f"A/A {r.kind}: always-valid false-positive rate"]
        print(f"{r.what}, tau {r.tau:g}")
        print(
            f"{'  always-valid (mSPRT), stop at first p <= alpha':<56}{r.always_valid:>7.3f}"
            f"{r.standard_error:>7.3f}  <= {ALPHA}  {verdict(target)}"
        )
        print(
            f"{'  naive peeking: first fixed-horizon p <= alpha':<56}{r.naive_peeking:>7.3f}  (contrast)"
        )
        print(
            f"{'  fixed horizon, one look at ' + f'{AA_MAX_N:,}':<56}{r.one_look:>7.3f}  (contrast)"
        )

    target = t["power: detection rate at per_arm_sequential"]
    print()
    print(
        f"2. Power: control {BASELINE}, treatment {BASELINE + EFFECT:.2f} (effect {EFFECT}), "
        f"alpha {ALPHA}, power {POWER}, {args.experiments:,} experiments ({times['power']:.1f} s)"
    )
    print(f"{'what':<56}{'figure':>9}  target")
    print(f"{'sample size per arm, fixed horizon (per_arm_fixed)':<56}{pw.per_arm_fixed:>9,}")
    print(
        f"{'sample size per arm, sequential (per_arm_sequential)':<56}{pw.per_arm_sequential:>9,}"
    )
    print(
        f"{f'always-valid detection rate, a look every {EVERY} to {pw.looked_up_to:,}':<56}"
        f"{pw.detected:>9.3f}  >= {pw.limit:.3f} (0.8 - 3 s.e.)  {verdict(target)}"
    )
    print(
        f"{'  mean units per arm when stopped (detection or the end)':<56}{pw.mean_units_at_stop:>9,.0f}"
    )
    print(
        f"{'fixed-horizon power, one look at per_arm_fixed':<56}{pw.fixed_power:>9.3f}  (contrast)"
    )

    print()
    print(
        f"3. Bandits: Bernoulli arms {', '.join(f'{m:.2f}' for m in MEANS)}, horizon "
        f"{args.horizon:,}, probabilities refreshed every {BATCH} requests, {args.bandit_seeds} "
        f"seeds (means over seeds; regret = expected regret)"
    )
    print(
        f"{'policy':<20}{'regret':>8}{'s.e.':>6}{'1st half':>10}{'2nd half':>10}{'sublinear':>11}"
        f"{'traffic share per arm':>24}{'best most':>11}{'seconds':>9}"
    )
    for b in [*bandits, uniform]:
        sub = t.get(f"bandits: {b.label} second-half regret < first")
        most = t.get(f"bandits: {b.label} best arm share > any other")
        share = " / ".join(f"{s:.3f}" for s in b.share)
        print(
            f"{b.label:<20}{b.final_regret:>8.1f}{b.regret_se:>6.1f}{b.first_half:>10.1f}{b.second_half:>10.1f}"
            f"{verdict(sub) if sub else '-':>11}{share:>24}{verdict(most) if most else '-':>11}"
            f"{b.seconds:>9.1f}"
        )
    greedy = bandits[0]
    by = {b.label: b for b in bandits}
    for label in ("thompson", "ucb1"):
        target = t[f"bandits: {label} regret < epsilon-greedy's"]
        print(
            f"target: {label} regret {target.figure:.1f} (s.e. {by[label].regret_se:.1f}) < "
            f"epsilon-greedy's {greedy.final_regret:.1f} (s.e. {greedy.regret_se:.1f}): {verdict(target)}"
        )
    print(
        f"for scale: uniform random is {uniform.final_regret:.0f} "
        f"(expected {args.horizon * float(np.mean(max(MEANS) - np.array(MEANS))):.0f})"
    )

    main, *contrasts = comparisons
    target = t["interleaving: users for 80 % power < A/B's"]
    print()
    print(f"4. Interleaving against A/B ({times['interleaving']:.1f} s)")
    print(textwrap.fill(f"setting: {main.setting.describe()}", 100, subsequent_indent="  "))
    print(f"{'users':>8}{'power interleaving':>20}{'power A/B':>11}")
    for n in SHOWN_USERS:
        if n in main.power_ab:
            pi = main.power_interleaving.get(n)
            print(f"{n:>8,}{'-' if pi is None else f'{pi:.2f}':>20}{main.power_ab[n]:>11.2f}")
    print(f"{'users for 80 % power':<44}{'interleaving':>13}{'A/B':>13}{'A/B / int.':>12}  target")
    for c in comparisons:
        visits = c.setting.visits
        label = (
            f"visits per user geometric, mean {visits:g}" if visits > 1 else "one visit per user"
        )
        ratio = "-" if c.ratio is None else f"{c.ratio:.1f}x"
        tail = f"interleaving < A/B  {verdict(target)}" if c is main else "(contrast)"
        print(
            f"{label:<44}{show(c.interleaving_users):>13}{show(c.ab_users):>13}{ratio:>12}  {tail}"
        )
    if contrasts:
        print("contrast: the same setting with one visit per user (no target)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000, help="A/A and power")
    parser.add_argument("--bandit-seeds", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=40_000)
    parser.add_argument("--interleaving-experiments", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    times: dict[str, float] = {}

    start = time.perf_counter()
    aa_rows = aa(np.random.default_rng([args.seed, 1]), args.experiments)
    times["aa"] = time.perf_counter() - start
    start = time.perf_counter()
    pw = power(np.random.default_rng([args.seed, 2]), args.experiments)
    times["power"] = time.perf_counter() - start
    start = time.perf_counter()
    bandits = [
        bandit(label, name, options, args.seed, args.bandit_seeds, args.horizon)
        for label, name, options in POLICIES
    ]
    uniform = bandit(*UNIFORM, args.seed, args.bandit_seeds, args.horizon)
    times["bandits"] = time.perf_counter() - start
    start = time.perf_counter()
    experiments = args.interleaving_experiments
    comparisons = [
        interleaving_vs_ab(
            np.random.default_rng([args.seed, 4, i]),
            Setting(visits=visits, experiments=experiments),
        )
        for i, visits in enumerate((3.0, 1.0))
    ]
    times["interleaving"] = time.perf_counter() - start
    times["total"] = time.perf_counter() - started

    targets = targets_of(aa_rows, pw, bandits, comparisons[0])
    missed = [target.name for target in targets if not target.met]
    if args.json:
        report = {
            "seed": args.seed,
            "alpha": ALPHA,
            "aa": {
                "experiments": args.experiments,
                "every": EVERY,
                "max_n": AA_MAX_N,
                "rows": [asdict(r) for r in aa_rows],
            },
            "power": {
                "experiments": args.experiments,
                "baseline": BASELINE,
                "effect": EFFECT,
                "power": POWER,
                **asdict(pw),
            },
            "bandits": {
                "means": list(MEANS),
                "horizon": args.horizon,
                "batch": BATCH,
                "seeds": args.bandit_seeds,
                "policies": [b.to_dict() for b in bandits],
                "uniform": uniform.to_dict(),
            },
            "interleaving": [c.to_dict() for c in comparisons],
            "seconds": {k: round(v, 2) for k, v in times.items()},
            "targets": [target.to_dict() for target in targets],
            "missed": missed,
            "meets_targets": not missed,
        }
        print(json.dumps(report))
    else:
        print_report(args, aa_rows, pw, bandits, uniform, comparisons, targets, times)
        print()
        print(f"{len(targets)} targets, {times['total']:.1f} s (seed {args.seed})")
        if missed:
            print("targets missed: " + "; ".join(missed))
        else:
            print("all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
