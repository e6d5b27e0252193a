"""Rollouts: how a challenger reaches traffic. Shadow (scored beside the champion on a share of
requests, never answering) and canary (answering a stepped share), with assignment by a stable
hash, the decision statistics of each step, and state and counters shared by every worker in
the metadata store."""

from typing import Any

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
    Counter,
    Rollout,
    Rollouts,
    counts_summary,
)

# The batch server and the log comparison need training and monitoring (and scipy): loaded on
# first use, so that a serving worker reading its router pays nothing for them.
_LAZY = {"BatchServer": "loopml.rollout._batch", "arm_losses": "loopml.rollout._compare"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.rollout' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "CHALLENGER_ALIAS",
    "BatchServer",
    "Comparison",
    "Counter",
    "CounterBuffer",
    "Decision",
    "Rollout",
    "Rollouts",
    "Route",
    "Router",
    "arm_losses",
    "compare_losses",
    "counts_summary",
    "default_metric",
    "look_of",
    "ops_checks",
    "per_row_loss",
    "positions",
    "unit_position",
    "wilson",
]
