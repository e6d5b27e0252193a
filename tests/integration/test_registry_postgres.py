"""The registry contract on the real PostgreSQL server, and two processes racing to promote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.registry import Registry
from loopml.spec import PostgresConfig
from loopml.testing import RegistryContract
from tests.unit.registry.test_registry_sqlite import (
    check_race,
    local_registry,
    prepare_race,
    promote_in_processes,
)

pytestmark = pytest.mark.postgres


def _config(postgres_schema: tuple[str, str]) -> PostgresConfig:
    url, schema = postgres_schema
    return PostgresConfig(url=url, schema=schema)  # type: ignore[call-arg]


class TestPostgresRegistry(RegistryContract):
    @pytest.fixture
    def registry(self, postgres_schema: tuple[str, str], tmp_path: Path) -> Iterator[Registry]:
        registry = local_registry(_config(postgres_schema), tmp_path)
        yield registry
        registry.store.close()


def test_two_processes_promote_at_once(postgres_schema: tuple[str, str], tmp_path: Path) -> None:
    config = _config(postgres_schema)
    registry = local_registry(config, tmp_path)
    try:
        prepare_race(registry)
        check_race(registry, promote_in_processes(registry, config, tmp_path, [2, 3]))
    finally:
        registry.store.close()
