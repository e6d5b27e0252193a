"""The serving advisor's records and its rule: the shape of a request distribution over keys
(peakedness, Gini), what static, dynamic and hybrid serving cost, how far static answers are
from dynamic ones, and the recommendation drawn from those figures (:class:`Rule`). The
measurements themselves are in :mod:`loopml.serving._advisor`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loopml.errors import UsageError

log = logging.getLogger(__name__)

TOPS = (1, 10, 100, 1000)
SHARES = (0.5, 0.9, 0.99)

# ---------------------------------------------------------------------------------- records


@dataclass
class Peakedness:
    """How the requests spread over the keys. Shares are of all requests (a request whose key has
    a null part counts as a request no key covers)."""

    requests: int
    keys: int
    unkeyed: int
    unique_share: float  # distinct keys per request: near 1 when keys are unbounded
    top_share: dict[str, float]  # "1", "10", "100", "1000": share covered by the top N keys
    gini: float  # of the frequencies of the requested keys: 0 flat, near 1 peaked
    keys_for: dict[str, int | None]  # "50%", "90%", "99%": keys needed (None: unreachable)


@dataclass
class Universe:
    """The keys a static table must cover."""

    keys: int
    recent_keys: int  # of them, those whose latest event is within 28 days of the newest
    coverage: float  # share of the requests whose key is in the universe
    counted: str


@dataclass
class Storage:
    """What a static table of the universe takes, from a real precomputation into the online
    store (into the advisor's own table, dropped afterwards)."""

    keys_precomputed: int
    bytes_precomputed: int
    seconds: float
    bytes_per_key: float
    universe_bytes: int
    universe_seconds: float
    extrapolated: bool


@dataclass
class Compute:
    """What dynamic serving costs, per prediction, in process."""

    sample: int
    median_us: float
    p99_us: float
    cpu_seconds_per_1000: float


@dataclass
class ModeLatency:
    """One mode's in-process latency on the sample (the engine's own timing of each answer)."""

    mode: str
    requests: int
    median_us: float
    p99_us: float
    mean_us: float
    static_share: float  # answered from the precomputed table
    fallbacks: int  # static only: keys not precomputed, answered by the fallback


@dataclass
class Hybrid:
    """The head precomputed for the hybrid measurement, and how often it was hit."""

    head: int
    chosen_by: str
    head_needed: int | None  # the fewest keys the lake has seen covering Rule.min_head_share
    head_share: float  # of all requests
    head_share_of_sample: float
    hit_rate: float  # measured: share of the sample answered statically


@dataclass(frozen=True)
class Rule:
    """The recommendation, in this order (the first that applies):

    1. **dynamic** when fewer than ``min_known`` of the requests have a key the lake has seen:
       keys are unbounded (timestamps, ids) and no table can hold them.
    2. **dynamic** when a lookup is not clearly faster than computing: the static median is not
       below the dynamic median divided by ``min_speedup``.
    3. **static** when the whole universe fits the budget (``max_bytes`` of table,
       ``max_seconds`` to precompute it), covers at least ``min_coverage`` of the requests, and
       its answers are close to the model's: the static answers differ from the dynamic ones to
       the same requests by at most ``max_divergence`` of how much the dynamic answers vary
       between requests (their mean absolute deviation). A table answers per key; when the
       model's other inputs move its answer more than that, a precomputed answer loses what the
       request says.
    4. **hybrid** when the requests are peaked: at most ``max_head`` keys the lake has seen
       cover ``min_head_share`` (most) of the requests, and the head's answers from the table
       are within ``max_divergence`` as above; the head is precomputed and the tail, however
       large the universe and whatever new keys arrive, is computed.
    5. **dynamic** otherwise: the requests are flat over a universe too large (or too
       incomplete) to precompute, or a table's answers are too far from the model's.
    """

    max_bytes: float = 1e9
    max_seconds: float = 3600.0
    min_coverage: float = 0.99
    min_head_share: float = 0.5
    max_head: int = 1000
    min_speedup: float = 1.5
    min_known: float = 0.5
    max_divergence: float = 0.25


@dataclass
class Divergence:
    """How far the answers a precomputed table gave are from the model's on-demand answers to
    the same requests (those the table answered)."""

    compared: int
    mean_abs: float  # mean |table - on demand| of the outputs (multiclass: over the classes too)
    max_abs: float
    spread: float  # mean |on demand - their mean|: how much on-demand answers vary by request
    relative: float  # mean_abs / spread: the share of that variation a table's answers miss
    decisions_changed: float | None  # share whose decision differs (binary, multiclass)

    def describe(self) -> str:
        text = (
            f"{self.mean_abs:.4f} on average (at most {self.max_abs:.4f}) over "
            f"{self.compared:,} requests, {self.relative:.0%} of how much on-demand answers vary "
            f"between requests ({self.spread:.4f})"
        )
        if self.decisions_changed is not None:
            text += f"; {self.decisions_changed:.1%} of decisions change"
        return text


def divergence(
    table: Sequence[Any],
    live: Sequence[Any],
    *,
    task: str,
    threshold: float | None = None,
) -> Divergence | None:
    """Compare a table's answers with on-demand ones to the same requests, pair by pair (None
    when there is no pair).

    >>> d = divergence([0.2, 0.6], [0.1, 0.9], task="binary")
    >>> round(d.mean_abs, 3), round(d.spread, 3), round(d.relative, 3), d.decisions_changed
    (0.2, 0.4, 0.5, 0.5)
    """
    if not table:
        return None
    a = np.asarray([np.asarray(x, dtype=float) for x in table], dtype=float)
    b = np.asarray([np.asarray(x, dtype=float) for x in live], dtype=float)
    diff = np.abs(a - b)
    per_request = diff.mean(axis=1) if diff.ndim == 2 else diff
    spread_each = np.abs(b - b.mean(axis=0))
    spread = float((spread_each.mean(axis=1) if spread_each.ndim == 2 else spread_each).mean())
    mean_abs = float(per_request.mean())
    changed: float | None = None
    if task == "binary":
        cut = 0.5 if threshold is None else threshold
        changed = float(np.mean((a >= cut) != (b >= cut)))
    elif task == "multiclass" and a.ndim == 2:
        changed = float(np.mean(a.argmax(axis=1) != b.argmax(axis=1)))
    return Divergence(
        compared=len(table),
        mean_abs=round(mean_abs, 5),
        max_abs=round(float(per_request.max()), 5),
        spread=round(spread, 5),
        # A table that never differs misses nothing, even from answers that never vary.
        relative=round(mean_abs / spread, 4) if spread > 0 else (0.0 if mean_abs == 0 else 1e9),
        decisions_changed=None if changed is None else round(changed, 4),
    )


@dataclass
class Recommendation:
    mode: str
    reasons: list[str]
    notes: list[str] = field(default_factory=list)
    rule: dict[str, Any] = field(default_factory=dict)


@dataclass
class Advice:
    """Everything :func:`advise` measured, and its recommendation."""

    model: str
    version: int
    key: list[str]
    source: str
    requests: int
    peakedness: Peakedness
    universe: Universe
    storage: Storage
    compute: Compute
    latency: dict[str, ModeLatency]
    static_coverage: float  # share of the sample answered statically in static mode
    divergence: float | None  # mean |static - dynamic| output where static answered
    static_vs_dynamic: Divergence | None  # the same, in full (what the rule weighs)
    hybrid_vs_dynamic: Divergence | None  # the hybrid run's answers from the table
    dynamic_flags: dict[str, int]  # dynamic answers flagged, by flag (newer_than_event, ...)
    hybrid: Hybrid
    recommendation: Recommendation
    feature_cache_s: float  # serving.feature_cache, as configured while measuring
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Advice:
        """The advice :meth:`to_dict` wrote (as :func:`save_advice` keeps it)."""

        def divergence(x: Any) -> Divergence | None:
            return None if x is None else Divergence(**x)

        return cls(
            **{
                **d,
                "peakedness": Peakedness(**d["peakedness"]),
                "universe": Universe(**d["universe"]),
                "storage": Storage(**d["storage"]),
                "compute": Compute(**d["compute"]),
                "latency": {k: ModeLatency(**v) for k, v in d["latency"].items()},
                "static_vs_dynamic": divergence(d.get("static_vs_dynamic")),
                "hybrid_vs_dynamic": divergence(d.get("hybrid_vs_dynamic")),
                "hybrid": Hybrid(**d["hybrid"]),
                "recommendation": Recommendation(**d["recommendation"]),
            }
        )


# Where a project keeps the latest advice (`loopml advise-serving` writes it; the dashboard's
# serving page reads it), under the project's folder.
ADVICE_FILE = Path(".loopml") / "serving" / "advice.json"


@dataclass(frozen=True)
class KeptAdvice:
    """The latest advice kept for a project, and when it was measured."""

    advice: Advice
    measured_at: datetime


def save_advice(advice: Advice, root: Path, *, at: datetime | None = None) -> Path:
    """Keep ``advice`` as the project's latest (written atomically), for the dashboard."""
    path = Path(root) / ADVICE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    when = (at or datetime.now(UTC)).isoformat()
    text = json.dumps({"measured_at": when, "advice": advice.to_dict()})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_advice(root: Path) -> KeptAdvice | None:
    """The project's latest advice, or None when none was kept (or it cannot be read: an
    advice from another loopml version is measured again, not guessed at)."""
    path = Path(root) / ADVICE_FILE
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        return KeptAdvice(
            Advice.from_dict(kept["advice"]), datetime.fromisoformat(kept["measured_at"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the kept serving advice at %s cannot be read: %s", path, exc)
        return None


# ------------------------------------------------------------------- the distribution's shape


def gini(counts: Sequence[int] | np.ndarray) -> float:
    """The Gini coefficient of frequencies: 0 when every key is requested equally often, towards
    1 when one key takes nearly all requests.

    >>> gini([5, 5, 5, 5]), round(gini([0, 0, 0, 12]), 2)
    (0.0, 0.75)
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), float(x.sum())
    if n < 2 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return max(0.0, float(2.0 * (ranks * x).sum() / (n * total) - (n + 1) / n))


def keys_covering(counts: np.ndarray, share: float, total: int) -> int | None:
    """The fewest keys (most requested first; ``counts`` sorted descending) that cover ``share``
    of ``total`` requests; None when all of them together do not."""
    if total <= 0:
        return None
    need = math.ceil(share * total - 1e-9)
    cum = np.cumsum(counts)
    i = int(np.searchsorted(cum, need, side="left"))
    return i + 1 if i < len(cum) else None


def peakedness(counts: Sequence[int] | np.ndarray, *, requests: int | None = None) -> Peakedness:
    """The shape of a request distribution from its key counts (``requests`` defaults to their
    sum; more requests than that means some had no key).

    >>> p = peakedness([1] * 100)
    >>> p.top_share["1"], p.gini, p.keys_for["50%"]
    (0.01, 0.0, 50)
    """
    c = np.sort(np.asarray(counts, dtype=np.int64))[::-1]
    keyed = int(c.sum())
    total = keyed if requests is None else int(requests)
    if total < keyed:
        raise UsageError(f"requests ({total}) cannot be fewer than the keyed requests ({keyed})")
    cum = np.cumsum(c)
    top = {
        str(k): (float(cum[min(k, len(c)) - 1]) / total if len(c) and total else 0.0) for k in TOPS
    }
    return Peakedness(
        requests=total,
        keys=len(c),
        unkeyed=total - keyed,
        unique_share=len(c) / total if total else 0.0,
        top_share=top,
        gini=gini(c),
        keys_for={f"{round(s * 100)}%": keys_covering(c, s, total) for s in SHARES},
    )


def recommend(
    *,
    coverage: float,
    universe_bytes: float,
    universe_seconds: float,
    head_needed: int | None,
    static_median_us: float,
    dynamic_median_us: float,
    static_divergence: Divergence | None = None,
    hybrid_divergence: Divergence | None = None,
    rule: Rule | None = None,
) -> Recommendation:
    """Apply :class:`Rule` to measured figures.

    ``coverage``: the share of requests whose key is in the universe; ``head_needed``: the
    fewest keys of the universe covering ``rule.min_head_share`` of the requests (None: none do);
    ``static_divergence`` and ``hybrid_divergence``: how far the table's answers in the static
    and hybrid measurements were from the dynamic ones (None: none was compared).
    """
    r = rule or Rule()
    why: list[str] = []
    facts = (
        f"universe {_bytes(universe_bytes)} and {universe_seconds:,.1f} s to precompute "
        f"(budget {_bytes(r.max_bytes)}, {r.max_seconds:,.0f} s), covering {coverage:.1%} of requests"
    )
    if coverage < r.min_known:
        why.append(
            f"only {coverage:.1%} of requests have a key the lake has seen (< {r.min_known:.0%}): "
            "the keys are unbounded, a table would miss most requests"
        )
        return Recommendation("dynamic", why, rule=asdict(r))
    speedup = dynamic_median_us / static_median_us if static_median_us > 0 else math.inf
    if speedup < r.min_speedup:
        why.append(
            f"a lookup ({static_median_us:,.1f} µs median) is not clearly faster than computing "
            f"({dynamic_median_us:,.1f} µs): {speedup:.2f}x < {r.min_speedup:g}x"
        )
        return Recommendation("dynamic", why, rule=asdict(r))
    why.append(
        f"a lookup is {speedup:.1f}x faster than computing "
        f"({static_median_us:,.1f} µs against {dynamic_median_us:,.1f} µs median)"
    )
    fits = universe_bytes <= r.max_bytes and universe_seconds <= r.max_seconds
    if fits and coverage >= r.min_coverage:
        why.append(facts + f": it fits, and covers at least {r.min_coverage:.0%}")
        if _close(static_divergence, r):
            if static_divergence is not None:
                why.append(_divergence_reason("static", static_divergence, r))
            return Recommendation("static", why, rule=asdict(r))
        assert static_divergence is not None
        why.append(_divergence_reason("static", static_divergence, r))
    else:
        why.append(
            facts + (": over budget" if not fits else f": under {r.min_coverage:.0%} coverage")
        )
    share = f"{r.min_head_share:.0%}"
    if head_needed is not None and head_needed <= r.max_head:
        why.append(
            f"peaked: {head_needed:,} keys cover {share} of requests (<= {r.max_head:,}): "
            "precompute them, compute the rest"
        )
        if _close(hybrid_divergence, r):
            if hybrid_divergence is not None:
                why.append(_divergence_reason("the head's", hybrid_divergence, r))
            return Recommendation("hybrid", why, rule=asdict(r))
        assert hybrid_divergence is not None
        why.append(_divergence_reason("the head's", hybrid_divergence, r))
        return Recommendation("dynamic", why, rule=asdict(r))
    why.append(
        f"flat: covering {share} of requests takes "
        + (f"{head_needed:,} keys" if head_needed is not None else "more keys than the lake has")
        + f" (> {r.max_head:,})"
    )
    return Recommendation("dynamic", why, rule=asdict(r))


def _close(d: Divergence | None, r: Rule) -> bool:
    return d is None or d.relative <= r.max_divergence


def _divergence_reason(what: str, d: Divergence, r: Rule) -> str:
    verdict = (
        f"within {r.max_divergence:.0%}"
        if d.relative <= r.max_divergence
        else f"over {r.max_divergence:.0%}: a table would answer too differently from the model"
    )
    return f"{what} precomputed answers differ from on-demand ones by {d.describe()}: {verdict}"


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"
