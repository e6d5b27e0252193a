"""Rollouts: how a challenger reaches traffic. Shadow (scored beside the champion on a share of
requests, never answering) and canary (answering a stepped share), with assignment by a stable
hash, the decision statistics of each step, and state and counters shared by every worker in
the metadata store."""

from loopml.rollout._batch import BatchServer
from loopml.rollout._compare import arm_losses
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
from loopml.rollout._store import Counter, Rollout, Rollouts

__all__ = [
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
    "default_metric",
    "look_of",
    "ops_checks",
    "per_row_loss",
    "positions",
    "unit_position",
    "wilson",
]
