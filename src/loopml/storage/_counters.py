"""The counters storage role: the shared counters of rollouts and experiments, read and added to
by every serving worker. In the metadata store (the default; SQLite or Postgres,
``_counters_sql``) or in Redis (``storage.counters: redis://...``, ``_counters_redis``).

Two kinds of shared state, both atomic on either backend:

- **increments** (requests, errors, latency, pulls of each arm): added by many workers at once
  with ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`` or Redis ``HINCRBYFLOAT`` in
  one ``MULTI``; no update is lost, whatever the interleaving.
- **snapshots** (a bandit's rewards per arm, recomputed from the feedback log): replaced as a
  whole, and only by a newer one (a compare-and-set on its stamp, the number of labels it
  counts), so two processes crediting the same log at once leave the newer result and never a
  mix, and crediting twice counts nothing twice.

This module is pure (no SQLAlchemy, no Redis client): the record, the protocol and the codec of
a snapshot, so that the bandit policies and the decision statistics import without storage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Counter:
    """A shared counter: how many observations, their sum and their sum of squares."""

    n: float = 0.0
    total: float = 0.0
    total_sq: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


Counts = dict[int, dict[str, Counter]]  # version -> name -> counter


class CounterStore(Protocol):
    """Where a rollout's shared counters live."""

    def add(self, rollout_id: int, counts: Mapping[tuple[int, str], Counter]) -> None:
        """Add to the counters ``(version, name)`` atomically."""

    def counts(self, rollout_id: int) -> Counts:
        """version -> name -> counter."""

    def put_snapshot(
        self, rollout_id: int, name: str, stamp: float, values: Mapping[int, Counter]
    ) -> bool:
        """Replace the snapshot ``name`` (version -> counter) if ``stamp`` is newer than the
        stored one; False when a newer or equal one is there already."""

    def snapshot(self, rollout_id: int, name: str) -> tuple[float, dict[int, Counter]]:
        """The stored snapshot and its stamp (``-inf`` and nothing when there is none)."""

    def drop(self, rollout_id: int) -> None:
        """Forget a rollout's counters and snapshots."""

    def describe(self) -> str: ...


def encode_snapshot(values: Mapping[int, Counter]) -> str:
    return json.dumps(
        {str(int(v)): [c.n, c.total, c.total_sq] for v, c in values.items()}, sort_keys=True
    )


def decode_snapshot(data: Any) -> dict[int, Counter]:
    raw = json.loads(data) if isinstance(data, str) else data
    return {int(v): Counter(*map(float, c)) for v, c in (raw or {}).items()}
