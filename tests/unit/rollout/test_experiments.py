"""Planning an A/B test: when the units it needs are more than the unit's values seen in the
prediction log, the plan says so with both numbers (in the result, and so in --json, and on
the command line). Experiments are built from the parts they use (by keyword, or from any
object holding them), the same as from a project."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow.compute as pc
import pytest

from loopml import Project
from loopml.cli import main
from loopml.rollout import Experiments


def stop(p: Project) -> None:
    active = p.rollouts.active(p.models.name)
    if active is not None:
        Experiments(p).end(active, promote=None, by="tests")


def test_a_plan_needing_more_units_than_seen_warns_with_both_numbers(project: Project) -> None:
    distinct = len(pc.unique(project.features.build().table.slice(0, 500)["c"]))
    try:
        r = Experiments(project).start("ab", [1, 2], unit="c", effect=0.02, by="tests")
    finally:
        stop(project)
    cfg = r.experiment.to_dict()
    size = cfg["sample_size"]
    assert cfg["unit_values"] == {"unit": "c", "distinct": distinct, "logged": 500}
    (warning,) = cfg["warnings"]
    assert f"{size['per_arm_sequential']:,} units per arm" in warning
    assert f"{distinct:,} distinct values of c" in warning and "500 logged" in warning


def test_a_plan_within_the_units_seen_does_not_warn(project: Project) -> None:
    try:
        r = Experiments(project).start("ab", [1, 2], unit="id", effect=0.3, by="tests")
    finally:
        stop(project)
    cfg = r.experiment.to_dict()
    assert cfg["sample_size"]["per_arm_sequential"] * 2 <= cfg["unit_values"]["distinct"] == 500
    assert cfg["warnings"] == []


def test_a_unit_never_logged_is_said(project: Project) -> None:
    try:
        r = Experiments(project).start("ab", [1, 2], unit="user", effect=0.02, by="tests")
    finally:
        stop(project)
    (warning,) = r.experiment.warnings
    assert "no logged request has the field user" in warning


def test_the_command_line_shows_the_warning(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(project.root)
    args = ["rollout", "start", "--strategy", "ab", "--arms", "1,2", "--unit", "c"]
    try:
        assert main([*args, "--effect", "0.02", "-p", root]) == 0
        out = capsys.readouterr().out
        assert "warning:" in out and "distinct values of c" in out
    finally:
        stop(project)
    try:
        assert main([*args, "--effect", "0.02", "-p", root, "--json"]) == 0
        started = json.loads(capsys.readouterr().out)
        assert "distinct values of c" in started["experiment"]["warnings"][0]
    finally:
        stop(project)


def test_experiments_built_from_their_parts_plan_as_from_the_project(project: Project) -> None:
    parts = {
        "rollouts": project.rollouts,
        "models": project.models,
        "registry": project.registry,
        "monitoring": project.monitoring,
    }
    plans = []
    for ex in (
        Experiments(project),
        Experiments(**parts),
        Experiments(SimpleNamespace(**parts)),
        project.experiments,
    ):
        try:
            r = ex.start("ab", [1, 2], unit="c", effect=0.02, by="tests")
            assert ex.evaluate(r)["versions"] == [1, 2]
        finally:
            stop(project)
        plans.append(r.experiment.to_dict())
    assert plans[0]["unit_values"]["logged"] == 500
    assert plans[1:] == [plans[0]] * 3


def test_experiments_refuse_missing_or_doubled_parts(project: Project) -> None:
    with pytest.raises(TypeError, match=r"Experiments\(\) is missing registry=, monitoring="):
        Experiments(rollouts=project.rollouts, models=project.models)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not both"):
        Experiments(project, rollouts=project.rollouts)  # type: ignore[call-overload]


def test_every_experiment_strategy_has_one_look() -> None:
    """evaluate dispatches through the table: a strategy without a look would fail there."""
    from loopml.rollout._experiments import LOOKS
    from loopml.rollout._store import EXPERIMENTS

    assert sorted(LOOKS) == sorted(EXPERIMENTS)
