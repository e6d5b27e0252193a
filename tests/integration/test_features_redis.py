"""Features with the production backends: Redis as the online store and as the event transport."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from loopml import Project
from tests.unit.features.test_point_in_time import PROFILES, SPEC, TRIPS, USERS

pytestmark = pytest.mark.redis


def test_stream_and_online_store_on_redis(
    make_project: Callable[..., Project], tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    spec = SPEC.replace(
        "sources:",
        f"storage:\n  online: {url}?prefix={prefix}-online\n  events: {url}?prefix={prefix}-events\nsources:",
        1,
    )
    p = make_project(spec)
    assert (
        type(p.online).__name__ == "RedisOnlineStore" and type(p.events).__name__ == "RedisEventLog"
    )
    for name, text in (("profiles", PROFILES), ("users", USERS)):
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        p.data.ingest(name, [path])
    (tmp_path / "trips.csv").write_text(TRIPS)
    assert p.features.publish("trips", pacsv.read_csv(tmp_path / "trips.csv")) == 6
    results = p.features.consumer("trips", batch_size=4).run(max_idle_steps=1, block_ms=0)
    assert sum(r.landed.rows_accepted for r in results if r.landed) == 6
    counts = p.features.materialize()
    assert counts["lookups"]["info"] == 2
    fs = p.features.feature_set
    for r in p.features.build(labelled_only=False).table.to_pylist():
        online = p.features.vector({k: r[k] for k in fs.request})
        for agg in fs.windows["user_trips"].aggs:
            assert online[agg.feature] == r[agg.feature], (r["id"], agg.feature)
        assert online["info_country"] == r["info_country"]
