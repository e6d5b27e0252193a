"""The statistics of a rollout step: is the challenger not worse than the champion (advance),
worse (roll back), or not known yet (hold)?

The ML metric is a per-prediction loss (log loss, Brier, error, squared or absolute error) once
labels arrive. A canary compares two independent groups of requests (Welch's z on the mean
losses); a shadow compares the two models on the same requests (the paired differences, far
tighter). The challenger passes when the upper confidence bound of its extra loss is below the
margin (non-inferiority) and is rolled back when the lower bound is above zero while it cannot be
shown within the margin. Looking again and again inflates false decisions, so a step is judged
only when the smaller arm's labels double (``min_labels``, 2x, 4x, ...), the j-th look spending
``alpha / 2^(j+1)`` (the looks together spend at most ``alpha``).

Error rate and latency come from the counters every worker adds to: a challenger whose error
rate is above the limit with confidence (Wilson bound), or whose mean latency is above the
allowed multiple of the champion's, is rolled back at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from loopml.errors import UsageError
from loopml.storage import Counter

_NORMAL = NormalDist()
EPS = 1e-15


def counter_of(values: Any) -> Counter:
    """The counter of a sample of values: how many, their sum and their sum of squares."""
    v = np.asarray(values, dtype=float)
    return Counter(float(len(v)), float(v.sum()), float((v * v).sum()))


def per_row_loss(
    metric: str, scores: np.ndarray, y: np.ndarray, *, threshold: float | None = None
) -> np.ndarray:
    """The loss of each prediction (lower is better)."""
    s = np.asarray(scores, dtype=float)
    if metric == "log_loss":
        p = np.clip(s, EPS, 1 - EPS)
        yy = np.asarray(y, dtype=float)
        return -(yy * np.log(p) + (1 - yy) * np.log1p(-p))
    if metric == "brier":
        return (s - np.asarray(y, dtype=float)) ** 2
    if metric == "error":
        cut = 0.5 if threshold is None else threshold
        return ((s >= cut) != np.asarray(y, dtype=bool)).astype(float)
    if metric == "squared_error":
        return (s - np.asarray(y, dtype=float)) ** 2
    if metric == "absolute_error":
        return np.abs(s - np.asarray(y, dtype=float))
    raise UsageError(f"unknown rollout metric {metric!r}")


def default_metric(task: str) -> str:
    return "log_loss" if task in ("binary",) else "squared_error"


def look_of(n: int, min_labels: int) -> int | None:
    """Which look ``n`` labels reach: None below ``min_labels``, then 0, 1, 2, ... at each
    doubling."""
    floor = max(min_labels, 1)
    if n < floor:
        return None
    return math.floor(math.log2(n / floor))


@dataclass
class Comparison:
    """The challenger's extra loss over the champion, with its confidence bounds."""

    n_champion: int
    n_challenger: int
    champion_mean: float | None
    challenger_mean: float | None
    difference: float | None  # challenger - champion (positive: worse)
    lower: float | None
    upper: float | None
    margin: float | None
    alpha: float
    look: int | None
    paired: bool
    verdict: str  # not_worse | worse | undecided | too_few

    def to_dict(self) -> dict[str, Any]:
        return {k: _round(v) for k, v in self.__dict__.items()}


def compare_losses(
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    margin: float,
    alpha: float,
    min_labels: int,
    paired: bool = False,
) -> Comparison:
    """Compare per-row losses. ``paired``: the i-th of each is the same request."""
    nh, nc = len(champion), len(challenger)
    look = look_of(min(nh, nc), min_labels)
    mh = float(np.mean(champion)) if nh else None
    mc = float(np.mean(challenger)) if nc else None
    out = Comparison(nh, nc, mh, mc, None, None, None, None, alpha, look, paired, "too_few")
    if look is None or mh is None or mc is None:
        return out
    a = alpha / 2 ** (look + 1)
    z = _NORMAL.inv_cdf(1 - a)
    if paired:
        d = np.asarray(challenger, float) - np.asarray(champion, float)
        diff = float(d.mean())
        se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
    else:
        diff = mc - mh
        se = math.sqrt(
            float(np.var(challenger, ddof=1)) / nc + float(np.var(champion, ddof=1)) / nh
        )
    m = margin * abs(mh)
    lower, upper = diff - z * se, diff + z * se
    if upper < m or (m == 0 and upper <= 0):  # a perfect champion: matching it is enough
        verdict = "not_worse"
    elif lower > 0:
        verdict = "worse"
    else:
        verdict = "undecided"
    out.difference, out.lower, out.upper, out.margin, out.alpha = diff, lower, upper, m, a
    out.verdict = verdict
    return out


def wilson(k: float, n: float, alpha: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion (two-sided 1 - alpha)."""
    if n <= 0:
        return 0.0, 1.0
    z = _NORMAL.inv_cdf(1 - alpha / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Decision:
    """What to do with a rollout step, and why."""

    action: str  # advance | rollback | hold
    reasons: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reasons": self.reasons, "numbers": self.numbers}


def ops_checks(
    champion: dict[str, Counter],
    challenger: dict[str, Counter],
    *,
    max_error_rate: float,
    max_latency_ratio: float,
    alpha: float,
    min_requests: int = 50,
) -> tuple[list[str], dict[str, Any]]:
    """Reasons to roll back from the shared counters (errors, latency); empty when none."""
    reasons: list[str] = []
    req = challenger.get("requests", Counter())
    err = challenger.get("errors", Counter())
    lo, hi = wilson(err.n, req.n, alpha)
    numbers: dict[str, Any] = {
        "requests": {"champion": champion.get("requests", Counter()).n, "challenger": req.n},
        "error_rate": {
            "challenger": err.n / req.n if req.n else None,
            "bounds": [lo, hi],
            "limit": max_error_rate,
        },
    }
    if req.n >= min_requests and lo > max_error_rate:
        reasons.append(
            f"error rate {err.n / req.n:.2%} over {int(req.n)} requests is above the limit "
            f"{max_error_rate:.2%} (lower bound {lo:.2%})"
        )
    lc, lh = challenger.get("latency_us", Counter()), champion.get("latency_us", Counter())
    if lc.n >= min_requests and lh.n >= min_requests and lh.mean:
        ratio = (lc.mean or 0.0) / lh.mean
        numbers["latency"] = {
            "challenger_us": lc.mean,
            "champion_us": lh.mean,
            "ratio": ratio,
            "limit": max_latency_ratio,
        }
        if ratio > max_latency_ratio:
            reasons.append(
                f"mean latency {lc.mean:.0f} µs is {ratio:.1f}x the champion's "
                f"{lh.mean:.0f} µs (limit {max_latency_ratio}x)"
            )
    return reasons, numbers


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return None if not math.isfinite(v) else round(v, 6)
    return v
