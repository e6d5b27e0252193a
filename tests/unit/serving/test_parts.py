"""Serving is built from a project's parts (the composition root hands them over): nothing opened
before it is used, a runtime served from the parts alone, and the app factory closing the project
it opened for a worker, whether the worker stops or fails to start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml import Project
from loopml.errors import LoopmlError
from loopml.serving import Runtime, create_app
from loopml.serving._parts import ServingParts
from tests.unit.serving.conftest import requests_of


def _closes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The roots of the projects closed from now on."""
    closed: list[Path] = []
    close: Callable[[Project], None] = Project.close

    def counted(self: Project) -> None:
        closed.append(self.root)
        close(self)

    monkeypatch.setattr(Project, "close", counted)
    return closed


def test_project_serving_opens_nothing_until_it_is_used(tmp_path: Path) -> None:
    with Project.init(tmp_path, name="shop") as p:
        parts = p.serving.parts
        # The online store, the event transport, the counters and monitoring stay closed until
        # serving calls on them (precompute opens the online store, a worker the rest).
        assert (p._online, p._events, p._rollouts, p._monitoring) == (None, None, None, None)
        assert parts.online is p.online and parts.events is p.events
        assert parts.rollouts is p.rollouts and parts.monitoring is p.monitoring
        assert parts.models is p.models and parts.artifact_files is p.artifacts.files


def test_a_runtime_serves_from_the_parts_alone(served: Project) -> None:
    parts = served.serving.parts
    assert isinstance(parts, ServingParts)
    rt = Runtime(parts)
    rt.holder.check()
    assert rt.parts is parts
    served_now = rt.holder.current
    assert served_now is not None
    answers = rt.engine.answer(rt.engine.parse(requests_of(served, 3)), served_now)
    assert [a.version for a in answers] == [served_now.number] * 3
    # Runtime(project) takes the same parts from the project, once.
    from_project = Runtime(served).parts
    assert from_project.models is parts.models and from_project.features is parts.features


def test_the_app_factory_closes_the_project_it_opened(
    served: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _closes(monkeypatch)
    with TestClient(create_app(served.root)) as client:
        assert client.get("/readyz").status_code == 200
        assert closed == []
    assert closed == [served.root]


def test_a_worker_that_fails_to_start_leaves_no_project_open(
    served: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = served.root / "loopml.yaml"
    text = spec.read_text()
    assert "  fallback: {kind: precomputed}\n" in text
    # A fallback model that was never registered: the runtime cannot be built.
    spec.write_text(text.replace("{kind: precomputed}", "{kind: model, model: '99'}"))
    try:
        closed = _closes(monkeypatch)
        with pytest.raises(LoopmlError), TestClient(create_app(served.root)):
            pass
        assert closed == [served.root]
    finally:
        spec.write_text(text)
