"""Judging a rollout step: advance, roll back or hold, from the shared counters (errors,
latency) and the labelled prediction log (the per-prediction losses of both arms).

The loop's state machine asks and acts on the answer; what the answer is belongs here, beside
the statistics it uses (:mod:`loopml.rollout._decide`) and the log comparison
(:mod:`loopml.rollout._compare`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from loopml.rollout._compare import arm_losses
from loopml.rollout._decide import Decision, compare_losses, default_metric, ops_checks
from loopml.rollout._store import Rollout
from loopml.spec import format_duration

if TYPE_CHECKING:
    from loopml.registry import Registry
    from loopml.rollout._services import OutcomeLog
    from loopml.rollout._store import Rollouts
    from loopml.spec import RolloutSpec


def look_key(rollout: Rollout) -> str:
    """The key of a rollout step's looks (the looks spent undecided at that step)."""
    return f"{rollout.id}:{rollout.step}"


def is_last_step(rollout: Rollout) -> bool:
    """Whether passing this step ends the rollout: a shadow has one step, and a step to the
    whole traffic is the promotion itself (a champion arm must remain to compare against until
    then)."""
    return (
        rollout.strategy == "shadow"
        or rollout.step + 1 >= len(rollout.steps)
        or rollout.steps[rollout.step + 1] >= 1.0
    )


class Judge:
    """Judges the steps of a model's rollouts (``spec``: the loop's rollout section; ``task``:
    the model's, for the default metric)."""

    def __init__(
        self,
        *,
        rollouts: Rollouts,
        registry: Registry,
        monitoring: OutcomeLog,
        spec: RolloutSpec,
        task: str,
    ) -> None:
        self.rollouts = rollouts
        self.registry = registry
        self.monitoring = monitoring
        self.spec = spec
        self.task = task

    def judge(
        self, rollout: Rollout, now: datetime, looks: Mapping[str, Sequence[int]] | None = None
    ) -> Decision:
        """Advance, roll back or hold the rollout's current step at ``now``. ``looks``: the
        looks already spent undecided at each step (by :func:`look_key`): a spent look is not
        judged again, and an undecided one is returned with ``numbers["looked"]`` to record."""
        spec = self.spec
        canary = spec.canary
        counts = self.rollouts.counts(rollout.id)
        reasons, ops = ops_checks(
            counts.get(rollout.champion, {}),
            counts.get(rollout.challenger, {}),
            max_error_rate=canary.max_error_rate,
            max_latency_ratio=canary.max_latency_ratio,
            alpha=canary.alpha,
        )
        if reasons:
            return Decision("rollback", reasons, {"ops": ops})
        metric = canary.metric or default_metric(self.task)
        since = rollout.step_started_at if rollout.strategy == "canary" else rollout.started_at
        arms = arm_losses(
            rollout,
            registry=self.registry,
            monitoring=self.monitoring,
            metric=metric,
            since=since,
            until=now,
        )
        min_labels = spec.shadow.min_labels if rollout.strategy == "shadow" else canary.min_labels
        cmp = compare_losses(
            arms["champion"],
            arms["challenger"],
            margin=canary.margin,
            alpha=canary.alpha,
            min_labels=min_labels,
            paired=arms["paired"],
        )
        numbers = {"metric": metric, **cmp.to_dict(), "ops": ops}
        timed_out = now - rollout.step_started_at > canary.step_timeout
        if cmp.look is None or cmp.look in (looks or {}).get(look_key(rollout), []):
            # Too few labels, or this look was spent undecided: wait for the next doubling.
            if timed_out:
                return Decision(
                    "rollback",
                    [
                        f"undecided after {format_duration(canary.step_timeout)} at step {rollout.step} "
                        "(inconclusive)"
                    ],
                    numbers,
                )
            return Decision("hold", [f"{cmp.verdict}: waiting for more labels"], numbers)
        if cmp.verdict == "worse":
            return Decision(
                "rollback",
                [
                    f"{metric} {cmp.challenger_mean:.4f} against the champion's "
                    f"{cmp.champion_mean:.4f}: worse with confidence (extra loss at least "
                    f"{cmp.lower:.4f})"
                ],
                numbers,
            )
        if cmp.verdict == "not_worse":
            return Decision(
                "advance",
                [
                    f"{metric} {cmp.challenger_mean:.4f} against {cmp.champion_mean:.4f}: extra "
                    f"loss at most {cmp.upper:.4f} < margin {cmp.margin:.4f}"
                ],
                numbers,
            )
        numbers["looked"] = cmp.look  # an undecided look is spent: recorded, not repeated
        return Decision("hold", ["undecided: waiting for more labels"], numbers)
