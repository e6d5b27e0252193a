"""Planning an A/B test: when the units it needs are more than the unit's values seen in the
prediction log, the plan says so with both numbers (in the result, and so in --json, and on
the command line)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pyarrow.compute as pc
import pytest

from loopml import Project
from loopml.cli import main
from loopml.rollout import Experiments
from loopml.testing import STREAM_START, stream_spec, write_stream


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """Two versions, and 500 of the champion's answers logged with their request fields."""
    root = tmp_path_factory.mktemp("experiments")
    (root / "loopml.yaml").write_text(stream_spec())
    p = Project.open(root)
    for path in write_stream(root / "incoming", days=8, per_hour=6, drift_day=None):
        p.data.ingest("events", [path])
    first = p.models.train(as_of=STREAM_START + timedelta(days=6)).version
    assert first is not None and p.models.evaluate(first.version).passed
    p.models.promote(first.version, reason="first")
    assert p.models.train().version is not None
    rows = p.features.build().table.slice(0, 500)
    model = p.models.load(1)
    p.monitoring.log_scored(
        rows,
        model.predict(rows),
        version=1,
        ids=[f"q{i}" for i in range(rows.num_rows)],
        features=model.encoding.features,
    )
    yield p
    p.close()


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
    cfg = r.data["experiment"]
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
    cfg = r.data["experiment"]
    assert cfg["sample_size"]["per_arm_sequential"] * 2 <= cfg["unit_values"]["distinct"] == 500
    assert cfg["warnings"] == []


def test_a_unit_never_logged_is_said(project: Project) -> None:
    try:
        r = Experiments(project).start("ab", [1, 2], unit="user", effect=0.02, by="tests")
    finally:
        stop(project)
    (warning,) = r.data["experiment"]["warnings"]
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
