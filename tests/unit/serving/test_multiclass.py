"""Serving a multiclass model: the top-k classes with their probabilities."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from loopml import Project
from tests.unit.training.test_tasks import project_for


def test_multiclass_answers_list_the_top_classes(
    make_project: Callable[..., Project], tmp_path: Path
) -> None:
    p = project_for(make_project, tmp_path, LABEL="kind", TASK="multiclass")
    v = p.models.train().version
    assert v is not None
    p.models.promote(v.version, force=True, reason="test")
    app = p.serving.app()
    with TestClient(app) as c:
        row = {"id": 1, "t": "2020-09-13T12:00:00Z", "x1": 2.0, "x2": -1.0, "cat": "a", "query": 0}
        body = c.post("/predict", json=row).json()
    pred = body["prediction"]
    assert body["version"] == v.version and len(pred["top"]) == 3
    assert pred["decision"] == pred["top"][0]["class"] == "high"
    probs = [t["probability"] for t in pred["top"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-9
