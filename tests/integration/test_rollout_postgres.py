"""Rollouts, their counters, the loop state and the lease on the real PostgreSQL server
(127.0.0.1:5432, database test), each test in a schema of its own: the same contracts as on
SQLite, including no lost counter updates between threads and processes, and one lease holder."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from loopml.spec import MetadataConfig, PostgresConfig
from loopml.storage import SqlMetadataStore, open_metadata
from tests.unit.controller.test_state import LoopStateContract
from tests.unit.rollout.test_store import RolloutsContract

pytestmark = pytest.mark.postgres


def _config(postgres_schema: tuple[str, str]) -> PostgresConfig:
    url, schema = postgres_schema
    return PostgresConfig(url=url, schema=schema)


class _OnPostgres:
    @pytest.fixture
    def config(self, postgres_schema: tuple[str, str]) -> MetadataConfig:
        return _config(postgres_schema)

    @pytest.fixture
    def store(self, config: MetadataConfig) -> Iterator[SqlMetadataStore]:
        s = open_metadata(config, root=None)
        yield s
        s.close()

    @pytest.fixture
    def reopen(
        self, store: SqlMetadataStore, config: MetadataConfig
    ) -> Callable[[], SqlMetadataStore]:
        return lambda: open_metadata(config, root=None)


class TestPostgresRollouts(_OnPostgres, RolloutsContract):
    pass


class TestPostgresLoopState(_OnPostgres, LoopStateContract):
    pass
