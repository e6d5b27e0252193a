"""A flights project with a champion, shared by the serving tests of a module."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopml import Project
from loopml.demo._ingest import DEMO_SPEC
from tests.helpers import flights_project

# The demo's spec (it serves dynamically, keys precomputed predictions by origin, dest, carrier
# and hour, and falls back to them after 50 ms), with a smaller model: quicker to train.
SPEC = DEMO_SPEC.replace("n_estimators: 200, num_leaves: 63", "n_estimators: 60, num_leaves: 31")


def champion_project(root: Path, spec: str = SPEC) -> Project:
    p = flights_project(root, months=(1,), spec=spec)
    v = p.models.train(as_of=datetime(2013, 1, 25, tzinfo=UTC)).version
    assert v is not None
    assert p.models.evaluate(v.version).passed
    p.models.promote(v.version, reason="tests")
    p.features.materialize()
    return p


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return champion_project(tmp_path_factory.mktemp("served"))


def requests_of(project: Project, n: int, start: int = 0) -> list[dict[str, object]]:
    """``n`` request bodies (JSON-ready) from the project's flights."""
    fs = project.features.feature_set
    table = project.features.build(labelled_only=False).table.slice(start, n)
    out = []
    for row in table.to_pylist():
        req = {k: row[k] for k in fs.request}
        req["time_hour"] = row["time_hour"].isoformat()
        out.append(req)
    return out
