"""The metadata role: one small protocol, one SQLAlchemy implementation for every SQL backend.

A backend module (``_sqlite``, ``_postgres``) only builds the engine; transactions, table creation
and error translation are shared here. Domain packages write their queries against
:mod:`loopml.storage._tables` inside :meth:`MetadataStore.read` and :meth:`MetadataStore.write`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError

from loopml.errors import BackendUnavailable, ConflictError, StorageError
from loopml.storage import _tables as t


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
    ) -> None:
        self.engine = engine
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

    def close(self) -> None:
        self.engine.dispose()

    def _create(self, prepare: Callable[[Connection], None] | None) -> None:
        with self.write() as conn:
            if prepare is not None:
                prepare(conn)
            t.metadata_obj.create_all(conn, checkfirst=True)
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


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else repr(exc)
