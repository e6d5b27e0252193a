"""Judging a rollout step outside the loop: from the shared counters and the labelled log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopml.rollout import Counter, Rollouts
from loopml.rollout._judge import Judge, is_last_step, look_key
from loopml.spec import RolloutSpec, SQLiteConfig
from loopml.storage import open_metadata

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class _EmptyLog:
    """A monitored log without predictions: no labels for either arm."""

    class log:  # the OutcomeLog's attribute, a class standing for the log object
        @staticmethod
        def predictions() -> None:
            return None

    def land(self) -> None:
        return None


@pytest.fixture
def rollouts(tmp_path: Path) -> Iterator[Rollouts]:
    store = open_metadata(SQLiteConfig(path="meta.db"), root=tmp_path)
    yield Rollouts(store)
    store.close()


def _judge(rollouts: Rollouts, **canary: Any) -> Judge:
    spec = RolloutSpec.model_validate({"canary": canary})
    return Judge(
        rollouts=rollouts,
        registry=None,  # type: ignore[arg-type] - not read without predictions
        monitoring=_EmptyLog(),  # type: ignore[arg-type]
        spec=spec,
        task="binary",
    )


def test_too_few_labels_holds_and_a_timed_out_step_rolls_back(rollouts: Rollouts) -> None:
    r = rollouts.start("m", strategy="canary", champion=1, challenger=2, steps=[0.1, 1.0], at=T0)
    judge = _judge(rollouts, step_timeout="1d")
    held = judge.judge(r, T0 + timedelta(hours=1))
    assert held.action == "hold" and held.numbers["metric"] == "log_loss"
    late = judge.judge(r, T0 + timedelta(days=2))
    assert late.action == "rollback" and "inconclusive" in late.reasons[0]
    # the timeout as the spec spells it, not Python's "1 day, 0:00:00"
    assert late.reasons[0] == "undecided after 1d at step 0 (inconclusive)"


def test_a_failing_challenger_is_rolled_back_from_the_counters(rollouts: Rollouts) -> None:
    r = rollouts.start("m", strategy="canary", champion=1, challenger=2, steps=[0.1, 1.0], at=T0)
    rollouts.add_counts(
        r.id,
        {(2, "requests"): Counter(200, 200, 200), (2, "errors"): Counter(40, 40, 40)},
    )
    decision = _judge(rollouts).judge(r, T0 + timedelta(hours=1))
    assert decision.action == "rollback" and "error rate" in decision.reasons[0]


def test_the_last_step_and_the_look_key(rollouts: Rollouts) -> None:
    r = rollouts.start("m", strategy="canary", champion=1, challenger=2, steps=[0.1, 1.0], at=T0)
    assert is_last_step(r) and look_key(r) == f"{r.id}:0"
    rollouts.end(r, "stopped", at=T0, reason="test")
    s = rollouts.start("m", strategy="canary", champion=1, challenger=2, steps=[0.1, 0.5, 1.0])
    assert not is_last_step(s)
    rollouts.end(s, "stopped", at=T0, reason="test")
    shadow = rollouts.start("m", strategy="shadow", champion=1, challenger=2, shadow=0.5)
    assert is_last_step(shadow)
