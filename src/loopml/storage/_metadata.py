"""The metadata role: one small protocol, one SQLAlchemy implementation for every SQL backend.

A backend module (``_sqlite``, ``_postgres``) only builds the engine; transactions, table creation
and error translation are shared here. Domain packages write their queries against
:mod:`loopml.storage.tables` inside :meth:`MetadataStore.read` and :meth:`MetadataStore.write`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError

from loopml.errors import BackendUnavailable, ConflictError, StorageError
from loopml.storage import _tables as t
from loopml.storage._ids import new_id
from loopml.storage._owner import owner_alive, owner_token

# A lock held from another host cannot be checked by its pid; after this long it is presumed dead.
REMOTE_STALE_AFTER = timedelta(hours=1)


@runtime_checkable
class MetadataStore(Protocol):
    """Transactions over the metadata tables.

    ``write()`` transactions are serialized against each other on every backend (SQLite takes its
    write lock at ``BEGIN IMMEDIATE``, Postgres an advisory lock), so a read-modify-write inside
    one is safe. ``read()`` transactions never wait for writers.
    """

    dialect: str

    def read(self) -> AbstractContext: ...

    def write(self) -> AbstractContext: ...

    def lock(
        self, name: str, *, what: str | None = None, timeout_s: float | None = None
    ) -> AbstractContextManager[None]:
        """Hold the named lock for the ``with`` block, across processes and hosts.

        Waits up to ``timeout_s`` (the store's ``lock_timeout_s`` when None) for another holder,
        then raises :class:`ConflictError` saying ``what`` is running and in which process. A
        holder that dies (even by SIGKILL) frees the lock.
        """
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class AbstractContext(Protocol):
    def __enter__(self) -> Connection: ...

    def __exit__(self, *exc: object) -> bool | None: ...


class SqlMetadataStore:
    """A :class:`MetadataStore` on any SQLAlchemy engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        description: str,
        prepare: Callable[[Connection], None] | None = None,
        serialize: Callable[[Connection], None] | None = None,
        lock_timeout_s: float = 600.0,
    ) -> None:
        self.engine = engine
        self.lock_timeout_s = lock_timeout_s
        self.dialect = engine.dialect.name
        self._description = description
        self._serialize = serialize
        self._create(prepare)

    def describe(self) -> str:
        """Where the store is, without credentials."""
        return self._description

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._translate(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with (
            self._translate(),
            self.engine.connect().execution_options(loopml_write=True) as conn,
            conn.begin(),
        ):
            if self._serialize is not None:
                self._serialize(conn)
            yield conn

    @contextmanager
    def lock(
        self, name: str, *, what: str | None = None, timeout_s: float | None = None
    ) -> Iterator[None]:
        """The lock as a row naming its holder; a holder whose process is gone is replaced.

        Each attempt is one short write transaction, so waiting never holds the store's write
        lock (SQLite has one for the whole file)."""
        ticket = new_id("l")
        holder = owner_token()
        wait_for(
            lambda: self._take(name, holder, ticket),
            name=name,
            what=what,
            timeout_s=self.lock_timeout_s if timeout_s is None else timeout_s,
            store=self._description,
        )
        try:
            yield
        finally:
            with self.write() as conn:
                conn.execute(delete(t.locks).where(t.locks.c.ticket == ticket))

    def _take(self, name: str, holder: str, ticket: str) -> tuple[str, datetime] | None:
        """Take the lock, or say who holds it: (holder, since)."""
        now = datetime.now(UTC)
        with self.write() as conn:
            row = conn.execute(select(t.locks).where(t.locks.c.name == name)).mappings().first()
            if row is None:
                conn.execute(
                    t.locks.insert().values(
                        name=name, holder=holder, ticket=ticket, acquired_at=now
                    )
                )
                return None
            if owner_alive(
                row["holder"], started=row["acquired_at"], now=now, stale_after=REMOTE_STALE_AFTER
            ):
                return row["holder"], row["acquired_at"]
            conn.execute(  # its holder died without letting go
                update(t.locks)
                .where(t.locks.c.name == name)
                .values(holder=holder, ticket=ticket, acquired_at=now)
            )
            return None

    def close(self) -> None:
        self.engine.dispose()

    def _create(self, prepare: Callable[[Connection], None] | None) -> None:
        with self.write() as conn:
            if prepare is not None:
                prepare(conn)
            t.metadata_obj.create_all(conn, checkfirst=True)
            # create_all skips a table that exists, with its indexes: an index added to the
            # layout later is created here on a store written by an older loopml.
            for table in t.metadata_obj.sorted_tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
            version = conn.execute(
                select(t.meta.c.value).where(t.meta.c.key == "schema_version")
            ).scalar()
            if version is None:
                conn.execute(
                    t.meta.insert().values(key="schema_version", value=str(t.SCHEMA_VERSION))
                )
            elif int(version) > t.SCHEMA_VERSION:
                raise StorageError(
                    f"the metadata store at {self._description} was written by a newer loopml "
                    f"(layout {version}, this one knows {t.SCHEMA_VERSION}): upgrade loopml"
                )

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except SAIntegrityError as exc:
            raise ConflictError(
                f"metadata conflict in {self._description}: {_first_line(exc.orig)}",
                details={"store": self._description},
            ) from exc
        except OperationalError as exc:
            text = _first_line(exc.orig)
            if "locked" in text or "busy" in text:
                raise ConflictError(
                    f"the metadata store {self._description} stayed locked by another process: "
                    f"{text}",
                    details={"store": self._description},
                ) from exc
            raise BackendUnavailable(
                f"metadata store {self._description} failed: {text}",
                details={"store": self._description},
            ) from exc


def wait_for(
    attempt: Callable[[], tuple[str, datetime] | None],
    *,
    name: str,
    what: str | None,
    timeout_s: float,
    store: str,
) -> None:
    """Call ``attempt`` until it takes the lock (returns None), backing off up to half a second;
    after ``timeout_s`` raise a :class:`ConflictError` naming the holder."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        held = attempt()
        if held is None:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.5)
    by, since = held
    host, _, rest = by.partition("|")
    pid = rest.partition("|")[0] or "?"
    raise ConflictError(
        f"{what or f'the lock {name!r} is taken'}: the lock is held by pid {pid} on {host} "
        f"(since {since:%Y-%m-%d %H:%M:%S} UTC); gave up after waiting {timeout_s:g} s: run it "
        "again when that process has finished (stopping it frees the lock, even with kill -9; "
        "the wait is the metadata store's lock_timeout_s)",
        details={"lock": name, "holder": by, "pid": pid, "host": host, "store": store},
    )


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else repr(exc)
