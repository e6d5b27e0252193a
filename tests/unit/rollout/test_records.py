"""A rollout's typed records: parsed once from the stored JSON, serialized once back, with rows
written before the records existed read the same."""

from __future__ import annotations

from typing import Any

from loopml.rollout import ExperimentConfig, Plan, Progress
from loopml.rollout._records import dump_data, parse_data

# An A/B test as the old code stored it (``Rollout.data``), after a look and its ending.
OLD_AB: dict[str, Any] = {
    "steps": [],
    "decisions": [{"at": "2024-03-01T12:00:00+00:00", "step": 0, "action": "stop"}],
    "arms": [1, 2],
    "shares": [0.5, 0.5],
    "experiment": {
        "metric": "accuracy",
        "kind": "proportion",
        "higher_is_better": True,
        "alpha": 0.05,
        "task": "binary",
        "effect": 0.02,
        "power": 0.8,
        "baseline": 0.9,
        "sd": None,
        "sample_size": {"per_arm_fixed": 100, "per_arm_sequential": 180},
        "warnings": [],
        "champion_at_start": 1,
        "by": "tests",
        "added_later": {"kept": True},  # a key this code does not name
    },
    "p_values": {"2": 0.3},
    "result": {"decision": "continue"},
    "reason": "by hand",
}


def test_an_old_experiment_row_reads_as_records_and_writes_back_unchanged() -> None:
    plan, experiment, progress, extra = parse_data(OLD_AB)
    assert plan.steps == [] and extra == {}
    assert experiment is not None
    assert (experiment.arms, experiment.shares, experiment.metric) == (
        [1, 2],
        [0.5, 0.5],
        "accuracy",
    )
    assert experiment.effect == 0.02 and experiment.sample_size["per_arm_fixed"] == 100
    assert experiment.champion_at_start == 1 and experiment.by == "tests"
    assert progress.p_values == {"2": 0.3} and progress.reason == "by hand"
    assert progress.result == {"decision": "continue"} and progress.decisions[0].action == "stop"
    assert dump_data(plan, experiment, progress, extra) == OLD_AB


def test_missing_keys_take_defaults_and_stay_missing() -> None:
    old = {"arms": [3, 4], "experiment": {"kind": "mean"}, "note": 1}
    plan, experiment, progress, extra = parse_data(old)
    assert plan.steps == [] and progress.decisions == [] and progress.reason is None
    assert experiment is not None
    assert (experiment.policy, experiment.options, experiment.kind) == ("thompson", {}, "mean")
    assert experiment.shares == [] and experiment.higher_is_better is True
    assert extra == {"note": 1}
    assert dump_data(plan, experiment, progress, extra) == old
    # a canary's row is no experiment; a row with no JSON at all reads as empty records
    assert parse_data({"steps": [0.5, 1], "decisions": []})[1] is None
    assert parse_data(None) == (Plan(), None, Progress(), {})


def test_the_experiment_json_is_the_keys_it_was_given() -> None:
    cfg = ExperimentConfig(arms=[1, 2], shares=[], metric="label", k=10, policy="ucb1")
    assert cfg.to_dict() == {"metric": "label", "k": 10, "policy": "ucb1"}
    out = dump_data(Plan(steps=[]), cfg, Progress(decisions=[]), {})
    assert out == {
        "steps": [],
        "decisions": [],
        "arms": [1, 2],
        "shares": [],
        "experiment": cfg.to_dict(),
    }


def test_decisions_are_typed_records_that_write_back_as_they_were_stored() -> None:
    """A step's decision and an experiment's ending read as records (attributes, not keys);
    the keys a record does not name are kept, the keys a row lacks stay missing."""
    from loopml.rollout import RecordedDecision

    step = {
        "at": "2024-03-01T12:00:00+00:00",
        "step": 1,
        "action": "advance",
        "reasons": ["log_loss not worse"],
        "numbers": {"delta": -0.01, "n": [120, 130]},
    }
    ended = {
        "at": "2024-03-02T12:00:00+00:00",
        "step": 0,
        "decision": "winner",
        "winner": 2,
        "reasons": ["version 2 is better"],
        "arms": [{"version": 2, "p_value": 0.001}],  # not named by the record: kept
        "control_mean": 0.61,
    }
    bare = {"action": "rollback"}  # an old or hand-made entry: its missing keys stay missing
    old = {"steps": [0.1, 1.0], "decisions": [step, ended, bare]}
    plan, experiment, progress, extra = parse_data(old)
    first, second, third = progress.decisions
    assert all(isinstance(d, RecordedDecision) for d in progress.decisions)
    assert (first.step, first.action, first.reasons) == (1, "advance", ["log_loss not worse"])
    assert first.numbers == {"delta": -0.01, "n": [120, 130]} and first.winner is None
    assert (second.decision, second.winner, second.action) == ("winner", 2, None)
    assert second.to_dict() == ended
    assert (third.action, third.step, third.at, third.to_dict()) == ("rollback", 0, None, bare)
    assert dump_data(plan, experiment, progress, extra) == old
