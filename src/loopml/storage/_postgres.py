"""The production metadata backend: PostgreSQL, every table in the configured schema."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, create_engine, delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import make_url

from loopml.errors import BackendUnavailable
from loopml.spec import PostgresConfig
from loopml.storage import _tables as t
from loopml.storage._ids import new_id
from loopml.storage._metadata import SqlMetadataStore, wait_for
from loopml.storage._owner import owner_token


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
            lock_timeout_s=config.lock_timeout_s,
        )

    @contextmanager
    def lock(
        self, name: str, *, what: str | None = None, timeout_s: float | None = None
    ) -> Iterator[None]:
        """A session advisory lock on a connection of its own: the server frees it when that
        connection ends, so a holder killed with SIGKILL (or a lost host) never keeps it. The
        ``locks`` row only says who holds it."""
        ticket = new_id("l")
        holder = owner_token()
        keys = {"s": self.schema, "n": name}
        with self._translate():
            conn = self.engine.connect()
        try:

            def attempt() -> tuple[str, datetime] | None:
                taken = conn.execute(
                    text("SELECT pg_try_advisory_lock(hashtext(:s), hashtext(:n))"), keys
                ).scalar()
                conn.commit()  # a session lock outlives the transaction; no snapshot is kept
                if taken:
                    return None
                with self.read() as r:
                    row = r.execute(select(t.locks).where(t.locks.c.name == name)).first()
                if row is None:  # the holder has not said who it is yet
                    return "unknown|?|?", datetime.now(UTC)
                return row.holder, row.acquired_at

            with self._translate():
                # The server frees the lock when it sees the session end; an idle session whose
                # host vanished is seen only by TCP keepalives, by default after two hours.
                conn.execute(
                    text(
                        "SELECT set_config('tcp_keepalives_idle', '30', false), "
                        "set_config('tcp_keepalives_interval', '10', false), "
                        "set_config('tcp_keepalives_count', '3', false)"
                    )
                )
                wait_for(
                    attempt,
                    name=name,
                    what=what,
                    timeout_s=self.lock_timeout_s if timeout_s is None else timeout_s,
                    store=self._description,
                )
        except BaseException:
            conn.invalidate()  # whatever it may hold dies with the connection
            conn.close()
            raise
        try:
            row = {
                "name": name,
                "holder": holder,
                "ticket": ticket,
                "acquired_at": datetime.now(UTC),
            }
            # The row only informs (the advisory lock decides): no need for the writers' lock.
            with self._translate(), self.engine.begin() as w:
                w.execute(text("SET LOCAL synchronous_commit = off"))  # lost in a crash: harmless
                w.execute(
                    insert(t.locks)
                    .values(**row)
                    .on_conflict_do_update(index_elements=["name"], set_=row)
                )
            yield
        finally:
            try:
                with self._translate(), self.engine.begin() as w:
                    w.execute(text("SET LOCAL synchronous_commit = off"))
                    w.execute(delete(t.locks).where(t.locks.c.ticket == ticket))
            finally:
                try:
                    conn.execute(
                        text("SELECT pg_advisory_unlock(hashtext(:s), hashtext(:n))"), keys
                    )
                    conn.commit()
                    conn.close()
                except BaseException:
                    conn.invalidate()  # never hand a pooled connection on with the lock held
                    conn.close()
                    raise

    def drop(self) -> None:
        """Drop the whole schema (tests and `loopml` tear-down only)."""
        with self.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
