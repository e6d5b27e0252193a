"""The in-memory stores that loopml.testing ships for users' tests pass their roles' contracts."""

from __future__ import annotations

import doctest
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from loopml.errors import UsageError
from loopml.registry import Registry
from loopml.storage import ArtifactStore, MetadataStore, SqlMetadataStore
from loopml.storage import tables as t
from loopml.testing import (
    EventLogContract,
    FileStoreContract,
    MemoryEventLog,
    MemoryFileStore,
    MemoryMetadataStore,
    MemoryOnlineStore,
    MetadataStoreContract,
    OnlineStoreContract,
    RegistryContract,
    _files,
    _memory,
    _metadata,
)


class TestMemoryOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self) -> MemoryOnlineStore:
        return MemoryOnlineStore()


class TestMemoryEventLog(EventLogContract):
    @pytest.fixture
    def log(self) -> MemoryEventLog:
        return MemoryEventLog()


class TestMemoryFileStore(FileStoreContract):
    @pytest.fixture
    def files(self) -> MemoryFileStore:
        return MemoryFileStore()


class TestMemoryMetadata(MetadataStoreContract):
    other_processes = False

    @pytest.fixture
    def store(self) -> Iterator[SqlMetadataStore]:
        s = MemoryMetadataStore()
        yield s
        s.close()


class TestMemoryRegistry(RegistryContract):
    @pytest.fixture
    def registry(self) -> Iterator[Registry]:
        registry = Registry(MemoryMetadataStore(), ArtifactStore(MemoryFileStore()))
        yield registry
        registry.store.close()


@pytest.mark.parametrize("module", [_memory, _files, _metadata])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted and not result.failed


def test_memory_stores_are_separate() -> None:
    """Two in-memory metadata stores (or file stores) share nothing: no global state."""
    a, b = MemoryMetadataStore(), MemoryMetadataStore()
    try:
        assert isinstance(a, MetadataStore)
        with a.write() as conn:
            conn.execute(t.meta.insert().values(key="only_in_a", value="1"))
        with b.read() as conn:
            assert conn.execute(select(t.meta.c.key)).scalars().all() == ["schema_version"]
    finally:
        a.close()
        b.close()
    files_a, files_b = MemoryFileStore(), MemoryFileStore()
    files_a.write_bytes("x", b"1")
    assert not files_b.exists("x")


def test_a_transaction_inside_another_is_refused_not_a_deadlock() -> None:
    """One connection serves every transaction, so a nested one in the same thread would wait
    for itself: it is refused with a message, and the outer one carries on."""
    store = MemoryMetadataStore()
    try:
        with store.write() as conn:
            with pytest.raises(UsageError, match="inside another"), store.read():
                pass
            conn.execute(t.meta.insert().values(key="k", value="v"))
        done = threading.Event()

        def other_thread() -> None:
            with store.read() as conn:
                assert conn.execute(select(t.meta.c.value).where(t.meta.c.key == "k")).scalar()
            done.set()

        th = threading.Thread(target=other_thread)
        th.start()
        th.join(10)
        assert done.is_set()
    finally:
        store.close()
