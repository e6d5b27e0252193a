"""Serving is built from a project's parts (the composition root hands them over): nothing opened
before it is used, a runtime served from the parts alone, and the app factory closing the project
it opened for a worker, whether the worker stops or fails to start, and a Ray batch worker opening
the project's features with the opener the composition root hands over."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml import Project
from loopml.errors import LoopmlError
from loopml.features import Features
from loopml.serving import Runtime, create_app
from loopml.serving._parts import ServingParts, serving_parts
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


def test_a_ray_worker_opens_features_with_the_composition_roots_opener(
    served: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml._project import open_features

    # Handed over, never imported by serving; Ray pickles it by reference to loopml._project.
    parts = served.serving.parts
    assert parts.open_features is open_features
    assert serving_parts(served).open_features is open_features
    assert pickle.loads(pickle.dumps(parts.open_features)) is open_features
    closed = _closes(monkeypatch)
    features, close = parts.open_features(str(served.root))
    assert features.feature_set.features == served.features.feature_set.features
    assert closed == []
    close()
    assert closed == [served.root]


def test_a_ray_scorer_opens_request_features_with_the_opener_it_is_given(
    served: Project,
) -> None:
    from loopml.serving._batch import _MODEL_FILES, _Plan, _RayScorer

    opened: list[str] = []
    closed: list[str] = []

    def opener(root: str | Path) -> tuple[Features, Callable[[], None]]:
        opened.append(str(root))
        return served.features, lambda: closed.append(str(root))

    model = served.models.verified("champion").only(_MODEL_FILES)
    plan = _Plan("requests", [], [], model.version.version, None)
    scorer = _RayScorer({"model": model}, plan, str(served.root), opener)
    assert opened == [str(served.root)] and scorer.build is not None
    del scorer
    assert closed == [str(served.root)]
    # Rows with every model input need no features: nothing is opened.
    _RayScorer({"model": model}, replace(plan, inputs="features"), str(served.root), opener)
    assert opened == [str(served.root)]
