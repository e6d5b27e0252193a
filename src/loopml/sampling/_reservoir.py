"""Reservoir sampling: a uniform (or weighted) sample of k items from a stream of unknown length."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from loopml.errors import UsageError
from loopml.sampling._args import as_weights, check_int, make_rng


class Reservoir:
    """A uniform sample of ``k`` items from a stream, kept in O(k) memory.

    After ``N`` items every item is in :attr:`sample_` with probability ``min(1, k / N)``, and every
    ``k``-subset is equally likely. It uses Algorithm L (Li, 1994): instead of a coin per item it
    draws how many items to skip before the next replacement, so a stream of ``N`` items costs about
    ``3 k log(N / k)`` random numbers (see :attr:`n_draws_`) rather than ``N``.

    Parameters are keyword-only and stored unchanged; the state learned from the stream ends
    in ``_``: :attr:`sample_` (the kept items, in no particular order), :attr:`n_seen_` and
    :attr:`n_draws_`.

    >>> r = Reservoir(k=3, seed=0)
    >>> r.update_many(range(1_000_000))
    >>> r.n_seen_, len(r.sample_), r.n_draws_ < 200
    (1000000, 3, True)
    """

    def __init__(self, *, k: int, seed: int | None = None) -> None:
        self.k = k
        self.seed = seed
        self._k = check_int("k", k, minimum=1)
        self._rng = make_rng(seed)
        self.sample_: list[Any] = []
        self.n_seen_ = 0
        self.n_draws_ = 0
        self._w = 1.0
        self._next = 0  # 1-based position of the next item to enter; 0 until the reservoir fills

    def __repr__(self) -> str:
        return f"Reservoir(k={self.k!r}, seed={self.seed!r})"

    def update(self, item: Any) -> None:
        """Offer the next item of the stream."""
        self.n_seen_ += 1
        if self.n_seen_ <= self._k:
            self.sample_.append(item)
            if self.n_seen_ == self._k:
                self._w = math.exp(math.log(self._random()) / self._k)
                self._skip()
        elif self.n_seen_ == self._next:
            self._replace(item)

    def update_many(self, items: Iterable[Any]) -> None:
        """Offer many items in stream order; same result as calling :meth:`update` on each.

        A sequence (list, tuple, range, numpy array) is indexed at the positions that enter the
        reservoir only, so the cost does not grow with its length; other iterables are walked.
        """
        if isinstance(items, Sequence | np.ndarray) and not isinstance(items, str | bytes):
            self._update_sequence(items)
            return
        for item in items:
            self.update(item)

    def _update_sequence(self, items: Sequence[Any] | np.ndarray) -> None:
        start = self.n_seen_  # items[j] is stream position start + j + 1
        size = len(items)
        fill = min(size, max(0, self._k - start))
        for j in range(fill):
            self.update(items[j])
        end = start + size
        while self._next and self._next <= end:
            self.n_seen_ = self._next - 1
            self.update(items[self._next - start - 1])
        self.n_seen_ = end

    def _random(self) -> float:
        self.n_draws_ += 1
        # Generator.random() is in [0, 1); 1 - u is in (0, 1], so its logarithm is finite.
        return 1.0 - float(self._rng.random())

    def _skip(self) -> None:
        # Geometric gap: the number of items passed over before the next one enters.
        gap = math.floor(math.log(self._random()) / math.log1p(-self._w))
        self._next = self.n_seen_ + gap + 1

    def _replace(self, item: Any) -> None:
        self.n_draws_ += 1
        self.sample_[int(self._rng.integers(self._k))] = item
        self._w *= math.exp(math.log(self._random()) / self._k)
        self._skip()


class WeightedReservoir:
    """A weighted sample of ``k`` items from a stream: A-Res (Efraimidis and Spirakis, 2006).

    Each item gets the key ``u ** (1 / weight)`` and the ``k`` largest keys are kept, so the sample
    is distributed as ``k`` draws without replacement, each proportional to weight among the items
    not yet drawn. Items of weight zero are never kept. :attr:`sample_` lists the kept items by
    decreasing key, which is the order those successive draws would have picked them.

    >>> r = WeightedReservoir(k=2, seed=0)
    >>> r.update_many(["rare", "common", "never"], [0.001, 1000.0, 0.0])
    >>> "common" in r.sample_, "never" in r.sample_
    (True, False)
    """

    def __init__(self, *, k: int, seed: int | None = None) -> None:
        self.k = k
        self.seed = seed
        self._k = check_int("k", k, minimum=1)
        self._rng = make_rng(seed)
        self.n_seen_ = 0
        # A min-heap of (log key, arrival, item); arrival breaks ties so items are never compared.
        self._heap: list[tuple[float, int, Any]] = []

    def __repr__(self) -> str:
        return f"WeightedReservoir(k={self.k!r}, seed={self.seed!r})"

    @property
    def sample_(self) -> list[Any]:
        """The kept items, by decreasing key."""
        return [item for _, _, item in sorted(self._heap, reverse=True)]

    def update(self, item: Any, weight: float) -> None:
        """Offer the next item of the stream with its (finite, non-negative) weight."""
        w = float(as_weights([weight], name="weight")[0])
        self._offer(item, w, float(self._rng.random()))

    def update_many(self, items: Iterable[Any], weights: Any) -> None:
        """Offer many items with one weight each; same result as :meth:`update` on each in turn.

        The keys are computed for the whole batch at once and only its ``k`` best are merged.
        """
        items = list(items)
        w = as_weights(weights)
        if len(w) != len(items):
            raise UsageError(
                f"weights has {len(w)} values but items has {len(items)}; give one weight per item",
                details={"argument": "weights", "weights": len(w), "items": len(items)},
            )
        u = self._rng.random(len(w))
        keys = _log_keys(u, w)
        arrival = self.n_seen_ + np.arange(len(w))
        self.n_seen_ += len(w)
        candidates = np.flatnonzero(np.isfinite(keys))
        if len(candidates) > self._k:
            top = np.argpartition(-keys[candidates], self._k - 1)[: self._k]
            candidates = candidates[top]
        for j in candidates:
            self._push(float(keys[j]), int(arrival[j]), items[j])

    def _offer(self, item: Any, w: float, u: float) -> None:
        key = float(_log_keys(np.array([u]), np.array([w]))[0])
        self.n_seen_ += 1
        if math.isfinite(key):
            self._push(key, self.n_seen_ - 1, item)

    def _push(self, key: float, arrival: int, item: Any) -> None:
        if len(self._heap) < self._k:
            heapq.heappush(self._heap, (key, arrival, item))
        elif (key, arrival) > self._heap[0][:2]:
            heapq.heapreplace(self._heap, (key, arrival, item))


def _log_keys(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``log(u ** (1/w))`` with u in (0, 1], -inf for weight 0: logs do not underflow for tiny w."""
    positive = w > 0
    return np.where(positive, np.log1p(-u) / np.where(positive, w, 1.0), -np.inf)
