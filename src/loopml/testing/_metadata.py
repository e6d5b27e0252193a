"""The contract every metadata backend passes, and an in-memory metadata store for users' tests.

Subclass the contract in a test module and provide a ``store`` fixture returning a fresh, empty
store, and a ``reopen`` fixture returning a function that opens the same store again::

    class TestMyBackend(MetadataStoreContract):
        @pytest.fixture
        def store(self): ...

        @pytest.fixture
        def reopen(self, store): ...

A store that lives in one process's memory sets ``other_processes = False`` and needs no
``reopen``: the tests that open the store again, or from another process, are skipped.

>>> from sqlalchemy import select
>>> from loopml.storage import tables
>>> store = MemoryMetadataStore()
>>> with store.read() as conn:
...     conn.execute(select(tables.meta.c.key)).scalars().all()
['schema_version']
>>> with store.lock("ingest:flights", timeout_s=1):
...     pass
>>> store.close()
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, create_engine, event, select, update
from sqlalchemy.pool import StaticPool

from loopml.data import ColumnSchema, Schema, SchemaChange
from loopml.data import catalog as cat
from loopml.errors import ConflictError, NotFoundError, UsageError
from loopml.storage import SqlMetadataStore, new_id
from loopml.storage import tables as t


class MemoryMetadataStore(SqlMetadataStore):
    """A metadata store in this process's memory, for tests of code that takes a
    :class:`~loopml.storage.MetadataStore` (the registry, the rollouts, the catalog): the same
    tables and queries as the SQLite backend, on an in-memory SQLite database.

    The database is one connection (``StaticPool``: every transaction sees the same database), so
    transactions take turns, reads as well as writes, under one lock; a write is therefore
    serialized against every other, as on the real backends. :meth:`lock` works between the
    threads of this process. The store lives as long as the object: :meth:`close` drops it, and
    no other process can open it.
    """

    def __init__(self, *, lock_timeout_s: float = 600.0) -> None:
        self._turn = threading.Lock()
        self._holder: int | None = None  # the thread in a transaction, to refuse nesting
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN itself
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        super().__init__(engine, description="sqlite:// (in memory)", lock_timeout_s=lock_timeout_s)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._take_turn(), super().read() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._take_turn(), super().write() as conn:
            yield conn

    @contextmanager
    def _take_turn(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._holder == me:  # waiting for itself would never end
            raise UsageError(
                "the in-memory metadata store has one connection: a transaction cannot be "
                "opened inside another one in the same thread; finish the first one before"
            )
        with self._turn:
            self._holder = me
            try:
                yield
            finally:
                self._holder = None


def _raises(exc: type[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except exc as caught:
        return caught
    raise AssertionError(f"expected {exc.__name__}")


def _schema(*names: str) -> Schema:
    return Schema(columns=[ColumnSchema(name=n, type="int64") for n in names])


def _pending(
    store: SqlMetadataStore,
    source: str = "s",
    content: str = "h1",
    origin: dict[str, Any] | None = None,
) -> str:
    batch_id = new_id("b")
    with store.write() as conn:
        cat.ensure_source(conn, source, format="csv", declared=True, config={})
        cat.insert_pending(
            conn,
            batch_id=batch_id,
            source=source,
            content_hash=content,
            file="f.csv",
            format="csv",
            origin=origin or {"kind": "file"},
            owner="host|1|1",
        )
    return batch_id


def _commit(
    store: SqlMetadataStore,
    batch_id: str,
    rows: int = 10,
    stats: dict[str, Any] | None = None,
) -> None:
    with store.write() as conn:
        cat.commit_batch(
            conn,
            batch_id,
            rows_read=rows,
            rows_accepted=rows,
            rows_quarantined=0,
            schema_version=1,
            lake_path=f"s/_batch={batch_id}/data.parquet",
            stats=stats or {"rows": rows, "parsed": rows, "nulls": {"a": 1}},
            warnings=[],
        )


def _needs_other_processes(contract: MetadataStoreContract) -> None:
    if not contract.other_processes:
        import pytest  # only here: loopml does not depend on pytest, its test suites run in it

        pytest.skip("the store lives in one process's memory: it cannot be opened again")


class MetadataStoreContract:
    """Behaviour every metadata backend must show."""

    other_processes = True  # False: a store in one process's memory (see the module docstring)

    def test_open_twice_keeps_data(self, store: SqlMetadataStore, request: Any) -> None:
        _needs_other_processes(self)
        reopen: Callable[[], SqlMetadataStore] = request.getfixturevalue("reopen")
        batch_id = _pending(store)
        again = reopen()
        try:
            with again.read() as conn:
                assert cat.get_batch(conn, batch_id).status == "pending"
                version = conn.execute(
                    select(t.meta.c.value).where(t.meta.c.key == "schema_version")
                ).scalar()
            assert version is not None and int(version) == t.SCHEMA_VERSION
        finally:
            again.close()

    def test_write_is_atomic(self, store: SqlMetadataStore) -> None:
        class Boom(Exception):
            pass

        def fail() -> None:
            with store.write() as conn:
                cat.ensure_source(conn, "s", format="csv", declared=True, config={})
                raise Boom

        _raises(Boom, fail)
        with store.read() as conn:
            assert cat.get_source(conn, "s") is None

    def test_datetimes_are_utc_and_exact(self, store: SqlMetadataStore) -> None:
        before = datetime.now(UTC)
        batch_id = _pending(store)
        with store.read() as conn:
            started = cat.get_batch(conn, batch_id).started_at
        assert started.tzinfo is not None and started.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= started <= datetime.now(UTC) + timedelta(seconds=1)

    def test_json_round_trips(self, store: SqlMetadataStore) -> None:
        config = {"nested": {"list": [1, 2.5, None, "é"], "flag": True}, "empty": {}}
        with store.write() as conn:
            cat.ensure_source(conn, "s", format="csv", declared=True, config=config)
        with store.read() as conn:
            assert cat.get_source(conn, "s").config == config  # type: ignore[union-attr]

    def test_same_content_cannot_be_live_twice(self, store: SqlMetadataStore) -> None:
        first = _pending(store, content="same")
        _raises(ConflictError, lambda: _pending(store, content="same"))
        with store.write() as conn:
            cat.abort_batch(conn, first)
        second = _pending(store, content="same")  # an aborted batch frees its content hash
        with store.read() as conn:
            assert cat.batch_by_hash(conn, "s", "same").id == second  # type: ignore[union-attr]

    def test_only_a_pending_batch_commits(self, store: SqlMetadataStore) -> None:
        batch_id = _pending(store)
        with store.write() as conn:
            cat.abort_batch(conn, batch_id)
        _raises(NotFoundError, lambda: _commit(store, batch_id))
        with store.read() as conn:
            assert cat.get_batch(conn, batch_id).status == "aborted"

    def test_batch_lifecycle_and_listing(self, store: SqlMetadataStore) -> None:
        a, b = _pending(store, content="a"), _pending(store, content="b")
        _commit(store, a, rows=5)
        with store.read() as conn:
            committed = cat.list_batches(conn, source="s")
            pending = cat.list_batches(conn, source="s", status="pending")
            stats = cat.recent_stats(conn, "s", 10)
        assert [x.id for x in committed] == [a]
        assert [x.id for x in pending] == [b]
        assert committed[0].rows_accepted == 5 and committed[0].committed_at is not None
        assert stats == [{"rows": 5, "parsed": 5, "nulls": {"a": 1}}]

    def test_batch_checks_history_is_delivered_files(self, store: SqlMetadataStore) -> None:
        """Newest first, files only: a stream micro-batch or a release of rows (marked, or
        from before the mark by its origin) is not the history of a file."""
        legacy = _pending(store, content="legacy")
        _commit(store, legacy, rows=7)
        stream = _pending(store, content="stream", origin={"kind": "stream"})
        _commit(store, stream, rows=2)
        rows = {"parsed": 1, "nulls": {}}
        marked = _pending(store, content="marked", origin={"kind": "stream"})
        _commit(store, marked, stats={"rows": 1, **rows, "delivery": False})
        whole = _pending(store, content="whole", origin={"kind": "release", "whole": True})
        _commit(store, whole, stats={"rows": 9, **rows, "delivery": True})
        with store.read() as conn:
            assert [s["rows"] for s in cat.recent_stats(conn, "s", 10)] == [9, 7]
            assert [s["rows"] for s in cat.recent_stats(conn, "s", 1)] == [9]

    def test_schema_versions(self, store: SqlMetadataStore) -> None:
        with store.write() as conn:
            cat.ensure_source(conn, "s", format="csv", declared=True, config={})
            v1 = cat.add_schema(conn, "s", _schema("a"), status="active", by="me")
            change = SchemaChange(kind="new_column", column="b", new="int64")
            v2 = cat.replace_proposal(conn, "s", _schema("a", "b"), [change], by="me", note="n")
            again = cat.replace_proposal(conn, "s", _schema("a", "b"), [change], by="me", note="n2")
        assert (v1, v2, again) == (1, 2, 2)
        with store.write() as conn:
            cat.activate(conn, "s", v2, by="you", note="ok")
        with store.read() as conn:
            active = cat.active_schema(conn, "s")
            versions = cat.schema_versions(conn, "s")
            assert cat.proposed_schema(conn, "s") is None
        assert active is not None and active.version == 2 and active.schema.names == ["a", "b"]
        assert [v.status for v in versions] == ["superseded", "active"]
        assert versions[1].changes == [change] and versions[1].created_by == "you"

    def test_quarantine_resolves_once(self, store: SqlMetadataStore) -> None:
        batch_id = _pending(store)
        _commit(store, batch_id)
        with store.write() as conn:
            cat.add_quarantine(
                conn,
                entry_id="q_1",
                batch_id=batch_id,
                source="s",
                kind="rows",
                rows=3,
                reasons=[{"code": "null", "column": "a", "count": 3}],
                path="p",
            )
        with store.write() as conn:
            cat.resolve_quarantine(
                conn, "q_1", status="dropped", by="me", resolution={"reason": "r"}
            )

        def again() -> None:
            with store.write() as conn:
                cat.resolve_quarantine(conn, "q_1", status="released", by="me", resolution={})

        _raises(ConflictError, again)
        with store.read() as conn:
            entry = cat.get_quarantine(conn, "q_1")
            assert cat.list_quarantine(conn) == []
            assert [e.id for e in cat.list_quarantine(conn, status="dropped")] == ["q_1"]
        assert entry.status == "dropped" and entry.resolution == {"reason": "r"}
        assert entry.reasons == [{"code": "null", "column": "a", "count": 3}]

    def test_snapshots(self, store: SqlMetadataStore) -> None:
        a, b = _pending(store, content="a"), _pending(store, content="b")
        _commit(store, a)
        _commit(store, b)
        with store.write() as conn:
            cat.create_snapshot(conn, "s_1", [a], by="me", note="first")
            cat.create_snapshot(conn, "s_2", [a, b], by="me", note="")
        with store.read() as conn:
            assert cat.get_snapshot(conn, "s_1").batch_ids == [a]
            assert [len(s.batch_ids) for s in cat.list_snapshots(conn)] == [1, 2]
            _raises(NotFoundError, lambda: cat.get_snapshot(conn, "s_9"))

    def test_writers_are_serialized(self, store: SqlMetadataStore) -> None:
        """Read-modify-write in concurrent write transactions loses no update."""
        with store.write() as conn:
            conn.execute(t.meta.insert().values(key="counter", value="0"))
        errors: list[BaseException] = []

        def bump() -> None:
            try:
                for _ in range(10):
                    with store.write() as conn:
                        value = int(
                            conn.execute(
                                select(t.meta.c.value).where(t.meta.c.key == "counter")
                            ).scalar_one()
                        )
                        conn.execute(
                            update(t.meta)
                            .where(t.meta.c.key == "counter")
                            .values(value=str(value + 1))
                        )
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        with store.read() as conn:
            assert (
                conn.execute(select(t.meta.c.value).where(t.meta.c.key == "counter")).scalar_one()
                == "40"
            )

    def test_lock_excludes_others_and_times_out_naming_the_holder(
        self, store: SqlMetadataStore
    ) -> None:
        taken, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store.lock("ingest:s"):
                taken.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert taken.wait(10)
            started = time.monotonic()
            error = _raises(
                ConflictError,
                lambda: store.lock("ingest:s", what="another ingest", timeout_s=0.3).__enter__(),
            )
            assert 0.3 <= time.monotonic() - started < 5
            assert "another ingest" in str(error) and f"pid {os.getpid()}" in str(error)
            assert isinstance(error, ConflictError) and error.details["lock"] == "ingest:s"
            with store.lock("ingest:other", timeout_s=1):  # another name is another lock
                pass
        finally:
            release.set()
            holder.join()
        with store.lock("ingest:s", timeout_s=1):  # freed by its holder
            pass

    def test_lock_is_mutual_exclusion(self, store: SqlMetadataStore) -> None:
        inside: list[int] = []
        overlaps: list[int] = []
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for _ in range(5):
                    with store.lock("ingest:s", timeout_s=30):
                        inside.append(n)
                        if len(inside) > 1:
                            overlaps.append(n)
                        time.sleep(0.005)
                        inside.remove(n)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors and not overlaps, (errors, overlaps)

    def test_lock_is_released_when_the_block_fails(self, store: SqlMetadataStore) -> None:
        class Boom(Exception):
            pass

        def fail() -> None:
            with store.lock("ingest:s"):
                raise Boom

        _raises(Boom, fail)
        with store.lock("ingest:s", timeout_s=1):
            pass

    def test_lock_of_a_killed_holder_is_freed(self, store: SqlMetadataStore, request: Any) -> None:
        """A holder killed with SIGKILL (no clean-up runs) does not keep the lock."""
        _needs_other_processes(self)
        reopen: Callable[[], SqlMetadataStore] = request.getfixturevalue("reopen")
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Event()

        def hold() -> None:
            with reopen().lock("ingest:s"):
                ready.set()
                time.sleep(60)

        child = ctx.Process(target=hold, daemon=True)
        child.start()
        try:
            assert ready.wait(30), "the child never took the lock"
            _raises(ConflictError, lambda: store.lock("ingest:s", timeout_s=0.2).__enter__())
        finally:
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        with store.lock("ingest:s", timeout_s=10):
            pass
