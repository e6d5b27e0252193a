"""A/B tests that may be looked at any time: always-valid (sequential) inference on the
difference of two arms' means, from their counters (:class:`~loopml.rollout._store.Counter` of
0/1 values, ``kind="proportion"``, or continuous ones, ``kind="mean"``).

A fixed-horizon z-test is valid for one look at a sample size fixed in advance; stopping at the
first ``p < 0.05`` among many looks rejects far more often than 5 % of the time. The mixture
sequential probability ratio test (mSPRT; Johari, Pekelis and Walsh, "Always valid inference",
2017/2022) mixes the likelihood ratio of ``theta = mean(treatment) - mean(control)``, estimated
with variance ``V``, over ``theta ~ N(0, tau^2)``::

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 theta_hat^2 / (2 V (V + tau^2)))

Under ``theta = 0``, ``P(Lambda ever >= 1/alpha) <= alpha`` (Ville's inequality), so the
always-valid p-value ``min over looks of 1/Lambda`` and the confidence sequence (the values of
``theta`` not rejected) may be checked after every unit. ``tau`` is the declared minimum effect:
the mixture puts its weight on differences of about that size, where the test is most powerful.
With several treatments, each is compared with the control at ``alpha / (arms - 1)``
(Bonferroni).

>>> s = sample_size(effect=0.02, baseline=0.10)
>>> s.per_arm_fixed, s.per_arm_fixed < s.per_arm_sequential
(3841, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from loopml.errors import UsageError
from loopml.rollout._decide import counter_of
from loopml.storage import Counter

if TYPE_CHECKING:
    from loopml.rollout._records import ExperimentConfig

KINDS = ("proportion", "mean")
_NORMAL = NormalDist()
_TINY = 1e-12  # floor of V for continuous metrics: constant arms must not divide by zero

Arrays = tuple[ArrayLike, ArrayLike, ArrayLike]  # n, total, total_sq (numbers or arrays)


# ---------------------------------------------------------------------- vectorized core


def estimate(kind: str, control: Arrays, treatment: Arrays) -> tuple[NDArray, NDArray]:
    """``(theta_hat, V)``: the difference treatment - control and its variance, elementwise over
    arrays of counters ``(n, total, total_sq)``.

    ``V`` is the pooled two-proportion variance ``p (1 - p) (1/n_A + 1/n_B)`` (exact under
    ``theta = 0``; with equal arms never below the unpooled one, so the confidence sequence stays
    conservative when the arms differ) or Welch's ``s_A^2/n_A + s_B^2/n_B``. Guards: ``n`` and
    ``n - 1`` count as at least 1; a pooled proportion of 0 or 1 moves half an event inward
    (0 events in 100 is not certainty); a continuous ``V`` is at least ``1e-12``."""
    _check_kind(kind)
    na, ta, qa = (np.asarray(x, dtype=float) for x in control)
    nb, tb, qb = (np.asarray(x, dtype=float) for x in treatment)
    na1, nb1 = np.maximum(na, 1.0), np.maximum(nb, 1.0)
    theta = tb / nb1 - ta / na1
    if kind == "proportion":
        both = na1 + nb1
        p = np.clip((ta + tb) / both, 0.5 / both, 1 - 0.5 / both)
        return theta, p * (1 - p) * (1 / na1 + 1 / nb1)
    var_a = np.maximum(qa - ta * ta / na1, 0.0) / np.maximum(na - 1, 1.0)
    var_b = np.maximum(qb - tb * tb / nb1, 0.0) / np.maximum(nb - 1, 1.0)
    return theta, np.maximum(var_a / na1 + var_b / nb1, _TINY)


def msprt(theta_hat: ArrayLike, v: ArrayLike, tau2: float) -> NDArray:
    """The mixture likelihood ratio ``Lambda`` of ``theta = 0`` against ``theta ~ N(0, tau2)``,
    elementwise (``inf`` where it overflows: overwhelming evidence).

    >>> float(msprt(0.0, 1.0, 3.0))  # no difference seen: sqrt(1/4)
    0.5
    """
    t, var = np.asarray(theta_hat, dtype=float), np.asarray(v, dtype=float)
    log_lr = 0.5 * np.log(var / (var + tau2)) + tau2 * t * t / (2 * var * (var + tau2))
    with np.errstate(over="ignore"):
        return np.exp(log_lr)


def always_valid_p(
    theta_hat: ArrayLike, v: ArrayLike, tau2: float, previous: ArrayLike = 1.0
) -> NDArray:
    """``min(previous, 1 / Lambda)``: the always-valid p-value after this look, given the
    running minimum of the earlier looks."""
    with np.errstate(divide="ignore"):
        return np.minimum(np.asarray(previous, dtype=float), 1.0 / msprt(theta_hat, v, tau2))


def radius(v: ArrayLike, tau2: float, alpha: float) -> NDArray:
    """Half-width of the ``1 - alpha`` confidence sequence around ``theta_hat``: exactly the
    ``theta`` whose mSPRT would not reject, so ``0`` lies outside it when ``1/Lambda <= alpha``."""
    var = np.asarray(v, dtype=float)
    return np.sqrt(
        var * (var + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log((var + tau2) / var))
    )


# ---------------------------------------------------------------------- one comparison


class SequentialTest(NamedTuple):
    """One treatment against the control (a tuple: unpacks as the six values)."""

    difference: float | None  # treatment - control
    low: float | None  # always-valid confidence sequence of the difference, at this look
    high: float | None
    z: float | None  # fixed-horizon statistic, for information
    p_fixed: float | None  # fixed-horizon two-sided p-value (not valid under peeking)
    p_value: float  # always-valid p-value, running minimum over the looks


def sequential_test(
    control: Counter,
    treatment: Counter,
    *,
    kind: str,
    effect: float,
    alpha: float,
    previous_p: float = 1.0,
    min_n: int = 2,
) -> SequentialTest:
    """The mSPRT of ``treatment`` against ``control`` at this look (``tau = effect``). Below
    ``min_n`` units in either arm (never fewer than 2) nothing is estimated and the p-value stays
    ``previous_p``.

    >>> r = sequential_test(Counter(1000, 300, 300), Counter(1000, 400, 400),
    ...                     kind="proportion", effect=0.05, alpha=0.05)
    >>> round(r.difference, 3), r.p_value < 0.05, r.low > 0
    (0.1, True, True)
    """
    _check_kind(kind)
    _check_positive("effect", effect)
    _check_open_unit("alpha", alpha)
    if not 0.0 <= previous_p <= 1.0:
        raise _usage("previous_p", f"must be a p-value in [0, 1], got {previous_p!r}", previous_p)
    if min(control.n, treatment.n) < max(min_n, 2):
        return SequentialTest(None, None, None, None, None, previous_p)
    if kind == "proportion":
        for name, c in (("control", control), ("treatment", treatment)):
            if not 0.0 <= c.total <= c.n:
                msg = f"'proportion' needs 0/1 values, but the {name} arm sums to {c.total} over {c.n} units; use kind='mean' for continuous values"
                raise _usage("kind", msg, kind)
    tau2 = effect * effect
    arrays = [(c.n, c.total, c.total_sq) for c in (control, treatment)]
    theta, v = (float(x) for x in estimate(kind, *arrays))
    half = float(radius(v, tau2, alpha))
    z = theta / math.sqrt(v)
    p_fixed = math.erfc(abs(z) / math.sqrt(2))
    p = float(always_valid_p(theta, v, tau2, previous_p))
    return SequentialTest(theta, theta - half, theta + half, z, p_fixed, p)


# ---------------------------------------------------------------------- several arms


@dataclass(frozen=True)
class ArmResult:
    """One treatment arm against the control."""

    version: int  # the arm (treatment) id
    n: float
    mean: float | None
    difference: float | None  # treatment - control; None while either arm is below min_n
    low: float | None  # always-valid confidence sequence of the difference
    high: float | None
    z: float | None  # fixed-horizon statistic
    p_fixed: float | None  # fixed-horizon two-sided p-value (not valid under peeking)
    p_value: float  # always-valid p-value (running minimum)
    significant: bool
    better: bool | None  # True: significantly better; False: worse; None: not significant

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ABResult:
    """Every treatment against the control, and what to do about it."""

    control: int
    control_n: float
    control_mean: float | None
    arms: list[ArmResult]
    decision: str  # continue | winner | control | no_difference
    winner: int | None
    reasons: list[str]
    alpha: float  # per comparison (after Bonferroni)

    def to_dict(self) -> dict[str, Any]:
        out = {k: _finite(v) for k, v in asdict(self).items()}
        return {**out, "arms": [a.to_dict() for a in self.arms]}


def compare_arms(
    counts: Mapping[int, Counter],
    *,
    control: int,
    kind: str,
    effect: float,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    previous: Mapping[int, float] | None = None,
    min_n: int = 100,
) -> ABResult:
    """Compare each arm of ``counts`` with ``control`` and decide: ``winner`` (some arm is
    significantly better; the best mean among those wins), ``control`` (every arm is
    significantly worse), ``no_difference`` (no arm can be better by ``effect``: each one's
    confidence sequence lies strictly within ``(-effect, +effect)``, or it is significantly
    worse) or ``continue``. ``previous`` holds each arm's p-value from the last look (the
    running minimum carries on from it); ``effect`` is the minimum difference worth detecting,
    in the metric's units."""
    _check_kind(kind)
    _check_positive("effect", effect)
    _check_open_unit("alpha", alpha)
    if control not in counts:
        raise _usage("control", f"{control!r} is not among the arms {sorted(counts)}", control)
    if len(counts) < 2:
        raise _usage("counts", "needs the control and at least one treatment arm")
    previous = previous or {}
    a = alpha / (len(counts) - 1)
    base = counts[control]
    arms: list[ArmResult] = []
    reasons: list[str] = []
    for version in sorted(v for v in counts if v != control):
        c = counts[version]
        prev = previous.get(version, 1.0)
        t = sequential_test(
            base, c, kind=kind, effect=effect, alpha=a, previous_p=prev, min_n=min_n
        )
        significant = t.difference is not None and t.p_value <= a
        better = None
        if significant and t.difference is not None:
            better = (t.difference > 0) == higher_is_better
        arms.append(ArmResult(version, c.n, c.mean, *t, significant, better))
        if t.difference is None:
            reasons.append(
                f"arm {version}: {c.n:g} units against the control's {base.n:g}; "
                f"both need at least {max(min_n, 2)}"
            )
    decision, winner = "continue", None
    good = [r for r in arms if r.better]
    sign = 1.0 if higher_is_better else -1.0
    if good:
        best = max(good, key=lambda r: sign * (r.mean or 0.0))
        decision, winner = "winner", best.version
        reasons += [_verdict(r, a, "better") for r in good]
        if len(good) > 1:
            reasons.append(f"arm {best.version} has the best mean ({best.mean:.6g})")
    elif all(r.better is False for r in arms):
        decision = "control"
        reasons += [_verdict(r, a, "worse") for r in arms]
    else:
        if all(r.better is False or _futile(r, effect) for r in arms):
            decision = "no_difference"
        reasons += [_status(r, a, effect) for r in arms if r.difference is not None]
    return ABResult(control, base.n, base.mean, arms, decision, winner, reasons, a)


def evaluate_ab(
    arms: Sequence[int],
    config: ExperimentConfig,
    values: Mapping[int, np.ndarray],
    units: Mapping[int, np.ndarray | None],
    *,
    previous: Mapping[str, float] | None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """An A/B experiment's look: each arm's metric against the control's (``arms[0]``) with
    always-valid inference, from each arm's per-prediction ``values`` (labelled answers) and,
    when the unit was logged, each value's unit; ``previous`` are the running p-values of the
    last look. Returns the result and the p-value of each arm, to keep for the next look."""
    counts: dict[int, Counter] = {}
    per_unit = False
    kind = config.kind
    for v, vals in values.items():
        u = units.get(v)
        if u is not None and len(vals):
            # The unit is what was randomized: its observations are averaged first, so
            # that a busy user counts once (and the test is Welch's on unit means).
            _, inverse, sizes = np.unique(u.astype(str), return_inverse=True, return_counts=True)
            means = np.bincount(inverse, weights=vals) / sizes
            per_unit = per_unit or bool((sizes > 1).any())
            counts[v] = counter_of(means)
        else:
            counts[v] = counter_of(vals)
    if per_unit:
        kind = "mean"
    size = config.sample_size
    result = compare_arms(
        counts,
        control=arms[0],
        kind=kind,
        effect=float(config.effect or 0.0),
        alpha=config.alpha,
        higher_is_better=config.higher_is_better,
        previous={int(k): float(p) for k, p in (previous or {}).items()},
        min_n=min(100, int(size.get("per_arm_fixed") or 100)),
    )
    out = result.to_dict()
    out.update(
        metric=config.metric,
        kind=kind,
        per_unit=per_unit,
        sample_size=size,
        effect=config.effect,
    )
    return out, {str(a.version): a.p_value for a in result.arms}


def _futile(r: ArmResult, effect: float) -> bool:
    return r.low is not None and r.high is not None and -effect < r.low and r.high < effect


def _ci(r: ArmResult, a: float) -> str:
    return f"always-valid {1 - a:.1%} interval {r.low:+.4g} to {r.high:+.4g}"


def _status(r: ArmResult, a: float, effect: float) -> str:
    if r.better is False:
        return _verdict(r, a, "worse")
    if _futile(r, effect):
        return (
            f"arm {r.version}: the difference lies within ±{effect:g} ({_ci(r, a)}): "
            "it cannot be better by the declared effect"
        )
    return f"arm {r.version}: not decided yet (p = {r.p_value:.3g} > {a:.3g}, {_ci(r, a)})"


def _verdict(r: ArmResult, a: float, word: str) -> str:
    return (
        f"arm {r.version} is {word} than the control: difference {r.difference:+.4g} "
        f"({_ci(r, a)}), always-valid p = {r.p_value:.3g} <= {a:.3g}"
    )


# ---------------------------------------------------------------------- sample size


@dataclass(frozen=True)
class SampleSize:
    """Units per arm to detect ``effect`` with probability ``power``: with one look at the end
    (fixed horizon), and with the mSPRT judged at the final look alone (conservative: watching
    continuously can only stop earlier)."""

    per_arm_fixed: int
    per_arm_sequential: int
    arms: int
    effect: float
    alpha: float  # overall; each comparison uses alpha_per_comparison
    power: float

    @property
    def alpha_per_comparison(self) -> float:
        return self.alpha / (self.arms - 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alpha_per_comparison": self.alpha_per_comparison}


def sample_size(
    *,
    effect: float,
    kind: str = "proportion",
    baseline: float | None = None,
    sd: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    arms: int = 2,
) -> SampleSize:
    """Units per arm needed to detect a difference of ``effect``: from ``baseline`` (the
    control's proportion) for proportions, from ``sd`` (per unit) for means."""
    _check_kind(kind)
    _check_positive("effect", effect)
    _check_open_unit("alpha", alpha)
    _check_open_unit("power", power)
    if arms < 2:
        raise _usage("arms", f"counts the control too and must be at least 2, got {arms!r}", arms)
    a = alpha / (arms - 1)
    za, zb = _NORMAL.inv_cdf(1 - a / 2), _NORMAL.inv_cdf(power)
    if kind == "proportion":
        if baseline is None or not 0.0 < baseline < 1.0:
            msg = f"(the control's proportion, in (0, 1)) is needed for kind='proportion', got {baseline!r}"
            raise _usage("baseline", msg, baseline)
        p1, p2 = baseline, baseline + effect
        if not p2 < 1.0:
            raise _usage("effect", f"baseline + effect = {p2:g} is not below 1; lower it", effect)
        pbar = (p1 + p2) / 2
        v_null, v_alt = 2 * pbar * (1 - pbar), p1 * (1 - p1) + p2 * (1 - p2)
    else:
        if sd is None or not sd > 0:
            msg = f"(the per-unit standard deviation, > 0) is needed for kind='mean', got {sd!r}"
            raise _usage("sd", msg, sd)
        v_null = v_alt = 2 * sd * sd
    fixed = (za * math.sqrt(v_null) + zb * math.sqrt(v_alt)) ** 2 / effect**2
    tau2 = effect * effect

    def reaches(n: int) -> bool:
        # At the final look theta_hat ~ N(effect, v_alt/n); the test measures it with v_null/n
        # (the pooled variance, for proportions) and rejects beyond the sequence's half-width.
        half = float(radius(v_null / n, tau2, a))
        sd_n = math.sqrt(v_alt / n)
        hit = _NORMAL.cdf((effect - half) / sd_n) + _NORMAL.cdf((-effect - half) / sd_n)
        return hit >= power

    lo, hi = 1, max(math.ceil(fixed), 2)
    while not reaches(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return SampleSize(math.ceil(fixed), hi, arms, effect, alpha, power)


# ---------------------------------------------------------------------- checks


def _usage(argument: str, message: str, value: Any = None) -> UsageError:
    return UsageError(f"{argument} {message}", details={"argument": argument, "value": value})


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise _usage("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}", kind)


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise _usage(name, f"must be positive, got {value!r}", value)


def _check_open_unit(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise _usage(name, f"must lie strictly between 0 and 1, got {value!r}", value)


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v
