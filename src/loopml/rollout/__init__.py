"""Rollouts: how a challenger reaches traffic. Shadow (scored beside the champion on a share of
requests, never answering) and canary (answering a stepped share), with assignment by a stable
hash (``assign``: one rule for serving and for batches) and the judging of each step
(``Judge``); and experiments over model versions: A/B tests with always-valid inference, bandits
(epsilon-greedy, UCB1, Thompson) and interleaving of rankers. State and counters are shared by every worker (the metadata store, or Redis).

Experiments, the batch server and the log comparison are built from the parts they use (the
rollouts, the model's versions, the monitored log), each named by a small Protocol here; a
``Project`` holds them all, so ``Experiments(project)`` works, but rollout never imports it."""

from typing import TYPE_CHECKING

from loopml._lazy import lazy_attributes
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
from loopml.rollout._services import BatchParts, ExperimentParts, OutcomeLog, ScoreLog
from loopml.storage import Counter, CounterStore

if TYPE_CHECKING:
    from loopml.rollout._batch import BatchServer
    from loopml.rollout._compare import arm_losses
    from loopml.rollout._experiments import Experiments, metric_values
    from loopml.rollout._interleave import preference, team_draft
    from loopml.rollout._judge import Judge, is_last_step, look_key
    from loopml.rollout._records import (
        ExperimentConfig,
        Plan,
        Progress,
        RecordedDecision,
        parse_data,
    )
    from loopml.rollout._router import (
        ArmShares,
        Assignment,
        CounterBuffer,
        Route,
        Router,
        assign,
        positions,
        unit_position,
    )
    from loopml.rollout._sequential import compare_arms, sample_size
    from loopml.rollout._store import (
        CHALLENGER_ALIAS,
        EXPERIMENTS,
        STRATEGIES,
        Rollout,
        Rollouts,
        counts_summary,
    )
    from loopml.storage import RedisCounters, SqlCounters

# The pure parts (decision statistics, bandit policies, the counter record) import with numpy
# alone. The store and the router need SQLAlchemy, the batch server and the log comparison need
# training and monitoring (and scipy): loaded on first use, so that a serving worker reading its
# router pays nothing for them, and `from loopml.rollout import make_policy` needs no database.
__getattr__ = lazy_attributes(
    __name__,
    {
        **dict.fromkeys(
            ("CHALLENGER_ALIAS", "EXPERIMENTS", "STRATEGIES", "Rollout", "Rollouts"),
            "loopml.rollout._store",
        ),
        "counts_summary": "loopml.rollout._store",
        # a rollout's typed records (pydantic): its plan, an experiment's configuration, progress
        **dict.fromkeys(
            ("ExperimentConfig", "Plan", "Progress", "RecordedDecision", "parse_data"),
            "loopml.rollout._records",
        ),
        **dict.fromkeys(
            (
                "ArmShares",
                "Assignment",
                "CounterBuffer",
                "Route",
                "Router",
                "assign",
                "positions",
                "unit_position",
            ),
            "loopml.rollout._router",
        ),
        "RedisCounters": "loopml.storage",
        "SqlCounters": "loopml.storage",
        "BatchServer": "loopml.rollout._batch",
        "arm_losses": "loopml.rollout._compare",
        "Experiments": "loopml.rollout._experiments",
        "Judge": "loopml.rollout._judge",
        "is_last_step": "loopml.rollout._judge",
        "look_key": "loopml.rollout._judge",
        "metric_values": "loopml.rollout._experiments",
        "compare_arms": "loopml.rollout._sequential",
        "sample_size": "loopml.rollout._sequential",
        "make_policy": "loopml.rollout._bandit",
        "team_draft": "loopml.rollout._interleave",
        "preference": "loopml.rollout._interleave",
    },
)


__all__ = [
    "CHALLENGER_ALIAS",
    "EXPERIMENTS",
    "STRATEGIES",
    "ArmShares",
    "Assignment",
    "BatchParts",
    "BatchServer",
    "Comparison",
    "Counter",
    "CounterBuffer",
    "CounterStore",
    "Decision",
    "ExperimentConfig",
    "ExperimentParts",
    "Experiments",
    "Judge",
    "OutcomeLog",
    "Plan",
    "Progress",
    "RecordedDecision",
    "RedisCounters",
    "Rollout",
    "Rollouts",
    "Route",
    "Router",
    "ScoreLog",
    "SqlCounters",
    "arm_losses",
    "assign",
    "compare_arms",
    "compare_losses",
    "counts_summary",
    "default_metric",
    "is_last_step",
    "look_key",
    "look_of",
    "make_policy",
    "metric_values",
    "ops_checks",
    "parse_data",
    "per_row_loss",
    "positions",
    "preference",
    "sample_size",
    "team_draft",
    "unit_position",
    "wilson",
]
