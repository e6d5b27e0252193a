"""Which arm answers a request, and the counters each worker adds to the shared ones.

Assignment is a stable hash of the rollout and the request's unit (a declared request field, or
the prediction id): every worker assigns a unit to the same arm without talking to the others,
and a unit on the challenger at one canary step stays on it at the next (the shares only grow).
The rollout itself is read from the metadata store in the background, never per request; the
counters are summed in memory and added to the shared ones in one transaction per flush.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.rollout._store import REWARDS, Rollout, Rollouts
from loopml.storage import Counter

log = logging.getLogger("loopml.rollout")

_SCALE = float(2**64)


def unit_position(rollout_id: int, unit: Any) -> float:
    """A unit's place in [0, 1) for a rollout: stable across workers, processes and steps.

    >>> unit_position(1, "user-7") == unit_position(1, "user-7")
    True
    """
    digest = hashlib.blake2b(f"{rollout_id}\x1f{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def positions(rollout_id: int, units: Iterable[Any]) -> np.ndarray:
    """:func:`unit_position` for many units."""
    prefix = f"{rollout_id}\x1f"
    blake = hashlib.blake2b
    return (
        np.fromiter(
            (
                int.from_bytes(blake(f"{prefix}{u}".encode(), digest_size=8).digest(), "big")
                for u in units
            ),
            dtype=np.float64,
        )
        / _SCALE
    )


@dataclass(frozen=True)
class Route:
    """Where one request goes: the version that answers, and whether it is shadowed."""

    version: int | None  # None: the champion (whatever the worker serves)
    arm: str  # champion | challenger | arm (an experiment's)
    shadow: bool
    rollout: int | None
    propensity: float | None = None  # an experiment's: the chance this arm had


CHAMPION = Route(None, "champion", False, None)


class Router:
    """One worker's view of the model's active rollout."""

    def __init__(self, rollouts: Rollouts, model: str, *, unit: str | None = None) -> None:
        self.rollouts = rollouts
        self.model = model
        self.unit = unit
        self.current: Rollout | None = None
        self.last_error: str | None = None
        # (rollout id, arms, probabilities, cumulative probabilities) of an A/B test or bandit
        self.arms: tuple[int, list[int], list[float], list[float]] | None = None
        self._rng = np.random.default_rng()

    def refresh(self) -> Rollout | None:
        """Read the active rollout and, for a bandit, its arms' probabilities from the shared
        reward snapshot (called from a background thread)."""
        try:
            current = self.rollouts.active(self.model)
            if current is not None and current.active and current.strategy in ("ab", "bandit"):
                self.arms = (current.id, *arm_shares(self.rollouts, current, self._rng))
            self.current = current
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - keep the last known rollout
            self.last_error = str(exc)
            log.warning("could not read the rollout of %s: %s", self.model, exc)
        return self.current

    def route(self, request_id: str, row: dict[str, Any] | None = None) -> Route:
        r = self.current
        if r is None or not r.active:
            return CHAMPION
        unit = row.get(r.unit) if r.unit and row is not None else None
        if r.strategy in ("ab", "bandit"):
            arms = self.arms
            if arms is None or arms[0] != r.id:
                return CHAMPION
            # A/B: the unit's stable place; a bandit: a fresh draw per request.
            u = (
                unit_position(r.id, request_id if unit is None else unit)
                if r.strategy == "ab"
                else random.random()
            )
            i = min(bisect.bisect_right(arms[3], u * arms[3][-1]), len(arms[1]) - 1)
            return Route(arms[1][i], "arm", False, r.id, arms[2][i])
        if r.strategy == "interleave":
            return CHAMPION  # /rank interleaves; single predictions stay with the champion
        u = unit_position(r.id, request_id if unit is None else unit)
        if r.strategy == "canary" and u < r.share:
            return Route(r.challenger, "challenger", False, r.id)
        return Route(None, "champion", r.shadow > 0 and u < r.shadow, r.id)


def arm_shares(
    rollouts: Rollouts, r: Rollout, rng: np.random.Generator
) -> tuple[list[int], list[float], list[float]]:
    """An experiment's arms, the probability of each and their running sum: the declared
    shares of an A/B test, or the policy's choice probabilities of a bandit from the shared
    reward snapshot (read each time: a worker calls this once per refresh)."""
    if r.strategy == "ab":
        shares = [float(s) for s in r.data.get("shares") or []] or [1.0 / len(r.arms)] * len(r.arms)
    else:
        from loopml.rollout._bandit import make_policy

        cfg = r.data.get("experiment", {})
        policy = make_policy(cfg.get("policy", "thompson"), **cfg.get("options", {}))
        _, snap = rollouts.counters.snapshot(r.id, REWARDS)
        # rewards are stored higher-is-better (a loss negated)
        stats = [snap.get(v, Counter()) for v in r.arms]
        shares = [float(p) for p in policy.probabilities(stats, rng)]
    return list(r.arms), shares, list(itertools.accumulate(shares))


class CounterBuffer:
    """Counters summed in memory by request threads and added to the shared ones on flush."""

    def __init__(self, rollouts: Rollouts) -> None:
        self.rollouts = rollouts
        self._lock = threading.Lock()
        self._pending: dict[int, dict[tuple[int, str], list[float]]] = {}
        self.flushes = 0
        self.errors = 0

    def add(self, rollout_id: int, version: int, name: str, value: float = 1.0) -> None:
        with self._lock:
            slot = self._pending.setdefault(rollout_id, {}).setdefault((version, name), [0, 0, 0])
            slot[0] += 1
            slot[1] += value
            slot[2] += value * value

    def flush(self) -> int:
        """Add what is pending to the shared counters; on failure it is kept for the next try."""
        with self._lock:
            pending, self._pending = self._pending, {}
        written = 0
        for rollout_id, counts in pending.items():
            try:
                self.rollouts.add_counts(
                    rollout_id, {k: Counter(v[0], v[1], v[2]) for k, v in counts.items()}
                )
                written += len(counts)
            except Exception as exc:  # noqa: BLE001 - retried on the next flush
                self.errors += 1
                log.warning("could not add rollout counters: %s", exc)
                with self._lock:
                    mine = self._pending.setdefault(rollout_id, {})
                    for k, v in counts.items():
                        slot = mine.setdefault(k, [0, 0, 0])
                        for i in range(3):
                            slot[i] += v[i]
        self.flushes += 1
        return written
