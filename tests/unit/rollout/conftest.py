"""A project shared by the rollout tests that need trained versions and a monitored log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from loopml import Project
from loopml.testing import STREAM_START, stream_spec, write_stream


@pytest.fixture(scope="package")
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
