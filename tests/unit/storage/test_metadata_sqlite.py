from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopml.spec import SQLiteConfig
from loopml.storage import SqlMetadataStore, open_metadata
from loopml.testing import MetadataStoreContract


class TestSQLiteMetadata(MetadataStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqlMetadataStore]:
        s = open_metadata(SQLiteConfig(path="meta.db"), root=tmp_path)
        yield s
        s.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Callable[[], SqlMetadataStore]:
        return lambda: open_metadata(SQLiteConfig(path="meta.db"), root=tmp_path)


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    s = open_metadata(SQLiteConfig(path="m.db"), root=tmp_path)
    with s.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()
