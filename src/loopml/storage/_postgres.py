"""The production metadata backend: PostgreSQL, every table in the configured schema."""

from __future__ import annotations

import importlib.util
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from loopml.errors import BackendUnavailable
from loopml.spec import PostgresConfig
from loopml.storage._metadata import SqlMetadataStore


def postgres_engine(config: PostgresConfig) -> Any:
    """An engine on psycopg 3 whose tables resolve into ``config.schema_``."""
    if importlib.util.find_spec("psycopg") is None:
        raise BackendUnavailable(
            "the PostgreSQL backend needs psycopg: pip install 'loopml[postgres]'",
            details={"extra": "postgres"},
        )
    url = make_url(config.url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(
        url,
        pool_size=config.pool_size,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10},
    )
    return engine.execution_options(schema_translate_map={None: config.schema_})


class PostgresMetadataStore(SqlMetadataStore):
    """Metadata in PostgreSQL; safe for many processes on many machines."""

    def __init__(self, config: PostgresConfig) -> None:
        self.schema = config.schema_
        engine = postgres_engine(config)
        safe_url = make_url(config.url).render_as_string(hide_password=True)

        def prepare(conn: Connection) -> None:
            # Two processes opening a fresh store at once must not both create the tables.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": self.schema})
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))

        def serialize(conn: Connection) -> None:
            # One writer at a time per store, as with SQLite: read-modify-write stays safe.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s) + 1)"), {"s": self.schema})

        super().__init__(
            engine,
            description=f"{safe_url} (schema {self.schema})",
            prepare=prepare,
            serialize=serialize,
        )

    def drop(self) -> None:
        """Drop the whole schema (tests and `loopml` tear-down only)."""
        with self.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
