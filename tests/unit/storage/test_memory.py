"""The in-memory stores that loopml.testing ships for users' tests pass their roles' contracts."""

from __future__ import annotations

import doctest

import pytest

from loopml.testing import (
    EventLogContract,
    MemoryEventLog,
    MemoryOnlineStore,
    OnlineStoreContract,
    _memory,
)


class TestMemoryOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def store(self) -> MemoryOnlineStore:
        return MemoryOnlineStore()


class TestMemoryEventLog(EventLogContract):
    @pytest.fixture
    def log(self) -> MemoryEventLog:
        return MemoryEventLog()


def test_doctests() -> None:
    result = doctest.testmod(_memory)
    assert result.attempted and not result.failed
