"""The batch server is built from the parts it uses: the rollouts, the model's versions and a
log taking its answers (any object with ``log_scored``), or from one object holding them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from loopml import Project
from loopml.rollout import BatchServer


class Answers:
    """A score log that keeps what it is given (the batch server's only call on monitoring)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def log_scored(self, table: pa.Table, scores: np.ndarray, **kw: Any) -> int:
        self.calls.append({"rows": table.num_rows, "scores": scores, **kw})
        return table.num_rows


def test_a_batch_server_built_from_its_parts_answers_with_the_champion(project: Project) -> None:
    assert project.rollouts.active(project.models.name) is None
    rows = project.features.build().table.slice(0, 40)
    log = Answers()
    server = BatchServer(
        rollouts=project.rollouts, models=project.models, monitoring=log, at="_event_time"
    )
    out = server.serve(rows, id_prefix="parts")
    assert out == {"rows": 40, "answered": {1: 40}, "shadowed": 0, "rollout": None}
    (call,) = log.calls
    model = project.models.load(1)
    assert call["rows"] == 40 and call["version"] == 1 and call["at"] == "_event_time"
    assert call["ids"] == [f"parts-{i}" for i in range(40)]
    assert call["features"] == list(model.encoding.features)
    np.testing.assert_allclose(call["scores"], model.predict(rows))


def test_a_batch_server_refuses_missing_or_doubled_parts(project: Project) -> None:
    with pytest.raises(TypeError, match=r"BatchServer\(\) is missing monitoring="):
        BatchServer(rollouts=project.rollouts, models=project.models)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not both"):
        BatchServer(project, monitoring=Answers())  # type: ignore[call-overload]
