"""The embedded metadata backend: an SQLite file in WAL mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event

from loopml.spec import SQLiteConfig
from loopml.storage._metadata import SqlMetadataStore


def sqlite_engine(path: Path, *, busy_timeout_s: float) -> Any:
    """An engine whose write transactions take SQLite's write lock at ``BEGIN IMMEDIATE``.

    Without it, two deferred transactions that both read then write deadlock, and one fails with
    "database is locked" at once instead of waiting ``busy_timeout_s``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        write = conn.get_execution_options().get("loopml_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class SQLiteMetadataStore(SqlMetadataStore):
    """Metadata in an SQLite file (WAL, one writer at a time, readers never blocked)."""

    def __init__(self, config: SQLiteConfig, *, root: Path) -> None:
        path = Path(config.path)
        if not path.is_absolute():
            path = root / path
        self.path = path
        super().__init__(
            sqlite_engine(path, busy_timeout_s=config.busy_timeout_s),
            description=f"sqlite:///{path}",
            lock_timeout_s=config.lock_timeout_s,
        )
