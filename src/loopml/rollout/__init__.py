"""Rollouts: how a challenger reaches traffic. Shadow (scored beside the champion on a share of
requests, never answering) and canary (answering a stepped share), with assignment by a stable
hash and the decision statistics of each step; and experiments over model versions: A/B tests
with always-valid inference, bandits (epsilon-greedy, UCB1, Thompson) and interleaving of
rankers. State and counters are shared by every worker (the metadata store, or Redis)."""

from typing import Any

from loopml.rollout._counters import CounterStore, RedisCounters, SqlCounters
from loopml.rollout._decide import (
    Comparison,
    Decision,
    compare_losses,
    default_metric,
    look_of,
    ops_checks,
    per_row_loss,
    wilson,
)
from loopml.rollout._router import CounterBuffer, Route, Router, positions, unit_position
from loopml.rollout._store import (
    CHALLENGER_ALIAS,
    EXPERIMENTS,
    STRATEGIES,
    Counter,
    Rollout,
    Rollouts,
    counts_summary,
)

# The batch server and the log comparison need training and monitoring (and scipy): loaded on
# first use, so that a serving worker reading its router pays nothing for them.
_LAZY = {
    "BatchServer": "loopml.rollout._batch",
    "arm_losses": "loopml.rollout._compare",
    "Experiments": "loopml.rollout._experiments",
    "compare_arms": "loopml.rollout._sequential",
    "sample_size": "loopml.rollout._sequential",
    "make_policy": "loopml.rollout._bandit",
    "team_draft": "loopml.rollout._interleave",
    "preference": "loopml.rollout._interleave",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.rollout' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "CHALLENGER_ALIAS",
    "EXPERIMENTS",
    "STRATEGIES",
    "BatchServer",
    "Comparison",
    "Counter",
    "CounterBuffer",
    "CounterStore",
    "Decision",
    "Experiments",
    "RedisCounters",
    "Rollout",
    "Rollouts",
    "Route",
    "Router",
    "SqlCounters",
    "arm_losses",
    "compare_arms",
    "compare_losses",
    "counts_summary",
    "default_metric",
    "look_of",
    "make_policy",
    "ops_checks",
    "per_row_loss",
    "positions",
    "preference",
    "sample_size",
    "team_draft",
    "unit_position",
    "wilson",
]
