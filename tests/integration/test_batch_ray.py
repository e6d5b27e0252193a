"""Batch prediction on a local Ray (2 CPUs): the Ray engine writes exactly the local engine's file,
for a training set and for request rows whose features the actors compute; a worker's error comes
back as the loopml error it was; a Ray it started is stopped again.

Skips when Ray is not installed, unless LOOPML_REQUIRE_SERVICES=1 (as CI sets it): then it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from loopml import Project, UsageError
from loopml.demo._ingest import DEMO_SPEC
from loopml.serving import predict_file
from tests.helpers import flights_project

# `ray` once the marker is registered in pyproject.toml. One worker runs both tests, one after
# the other: two local Rays at once on a 2-core machine took 115 s and 85 s instead of 14 s each.
pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("batch_ray")]


def require_ray() -> Any:
    """The ray module; skip (or, with LOOPML_REQUIRE_SERVICES=1, fail) when it is missing."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        reason = f"ray is not installed ({exc}); pip install 'loopml[ray]'"
        if os.environ.get("LOOPML_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; LOOPML_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    return ray


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> Project:
    require_ray()
    spec = DEMO_SPEC.replace("n_estimators: 200,", "n_estimators: 60,")
    p = flights_project(tmp_path_factory.mktemp("batch-ray"), months=(1,), spec=spec)
    v = p.models.train().version
    assert v is not None and p.models.evaluate(v.version).passed
    p.models.promote(v.version, reason="tests")
    return p


@pytest.fixture(scope="module")
def files(flights: Project, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("batch-ray-files")
    table = flights.features.build(labelled_only=False).table
    pq.write_table(table, folder / "training.parquet")
    requests = table.select(flights.features.feature_set.request)
    pacsv.write_csv(requests, folder / "requests.csv")
    bad = requests.slice(0, 50)
    bad = bad.set_column(bad.column_names.index("distance"), "distance", pa.array(["far"] * 50))
    pq.write_table(bad, folder / "bad.parquet")
    return {
        "training": folder / "training.parquet",
        "requests": folder / "requests.csv",
        "bad": folder / "bad.parquet",
    }


@pytest.fixture
def ray_session(flights: Project) -> Iterator[Any]:
    ray = require_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def local_and_ray(
    project: Project, source: Path, folder: Path, **kwargs: Any
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    predict_file(project, source, folder / "local.parquet", chunk_rows=4000)
    summary = predict_file(project, source, folder / "ray.parquet", engine="ray", **kwargs)
    return pq.read_table(folder / "local.parquet"), pq.read_table(folder / "ray.parquet"), summary


def test_a_ray_it_starts_is_stopped_and_the_predictions_are_the_local_ones(
    flights: Project, files: dict[str, Path], tmp_path: Path
) -> None:
    ray = require_ray()
    assert not ray.is_initialized()
    local, remote, summary = local_and_ray(
        flights, files["training"], tmp_path, chunk_rows=3000, num_cpus=2
    )
    assert not ray.is_initialized()
    assert summary["engine"] == "ray" and summary["inputs"] == "features"
    assert summary["rows"] == local.num_rows > 20000
    assert np.array_equal(remote["prediction"].to_numpy(), local["prediction"].to_numpy())
    assert remote.equals(local) and remote.schema.equals(local.schema, check_metadata=True)


def test_actors_compute_request_features_and_report_errors(
    ray_session: Any, flights: Project, files: dict[str, Path], tmp_path: Path
) -> None:
    local, remote, summary = local_and_ray(flights, files["requests"], tmp_path, chunk_rows=5000)
    assert summary["inputs"] == "requests" and summary["rows"] == local.num_rows
    assert remote.equals(local)
    assert ray_session.is_initialized()  # a Ray it did not start is left running

    with pytest.raises(UsageError, match="distance") as caught:
        predict_file(flights, files["bad"], tmp_path / "bad-out.parquet", engine="ray")
    assert caught.value.details == {"engine": "ray"}
    assert not (tmp_path / "bad-out.parquet").exists()
