from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.errors import StorageError
from loopml.spec import SQLiteConfig
from loopml.storage import OnlineStore, TileWrite, open_online
from loopml.storage._online_sqlite import LAYOUT_VERSION, SQLiteOnlineStore
from loopml.testing import OnlineStoreContract
from loopml.testing._online import add


class TestSQLiteOnline(OnlineStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[OnlineStore]:
        s = open_online(SQLiteConfig(path="online.db"), root=tmp_path)
        yield s
        s.close()


def test_factory_opens_sqlite_relative_to_root(tmp_path: Path) -> None:
    s = open_online(SQLiteConfig(path="sub/online.db"), root=tmp_path)
    assert isinstance(s, SQLiteOnlineStore) and isinstance(s, OnlineStore)
    assert s.path == tmp_path / "sub" / "online.db" and s.path.exists()
    s.close()


def test_uses_wal(tmp_path: Path) -> None:
    s = open_online(SQLiteConfig(path="o.db"), root=tmp_path)
    s.close()
    with sqlite3.connect(tmp_path / "o.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LAYOUT_VERSION
    conn.close()


def test_survives_reopen(tmp_path: Path) -> None:
    config = SQLiteConfig(path="o.db")
    s = open_online(config, root=tmp_path)
    s.put_latest("t", [("k", 2.0, b"v")])
    s.merge_tiles("t", [TileWrite("k", 0, b"3")], add, mark=("m", "7"))
    s.close()
    again = open_online(config, root=tmp_path)
    assert again.get_latest("t", ["k"]) == [(2.0, b"v")]
    assert again.get_tiles("t", "k", [0]) == [b"3"]
    assert again.get_mark("m") == "7"
    again.merge_tiles("t", [TileWrite("k", 0, b"4")], add)
    assert again.get_tiles("t", "k", [0]) == [b"7"]
    again.close()


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    """As two processes would: each has its own connections to the same file."""
    a = open_online(SQLiteConfig(path="o.db"), root=tmp_path)
    b = open_online(SQLiteConfig(path="o.db"), root=tmp_path)
    a.merge_tiles("t", [TileWrite("k", 0, b"1")], add)
    b.merge_tiles("t", [TileWrite("k", 0, b"1")], add)
    assert a.get_tiles("t", "k", [0]) == [b"2"]
    a.close()
    b.close()


def test_generations_see_writes_from_anywhere(tmp_path: Path) -> None:
    """A reader's generations move with writes through another store on the file (another
    process), another thread's connection of the same store, and its own connection."""
    reader = open_online(SQLiteConfig(path="o.db"), root=tmp_path)
    other = open_online(SQLiteConfig(path="o.db"), root=tmp_path)
    seen = reader.generations(["t"])
    other.put_latest("t", [("k", 1.0, b"v")])
    assert reader.generations(["t"]) != seen
    seen = reader.generations(["t"])
    thread = threading.Thread(
        target=lambda: reader.merge_tiles("t", [TileWrite("k", 0, b"1")], add)
    )
    thread.start()
    thread.join()
    assert reader.generations(["t"]) != seen
    seen = reader.generations(["t"])
    reader.put_latest("t", [("k", 2.0, b"w")])
    assert reader.generations(["t"]) != seen
    assert reader.generations(["t", "u"])[1] == 0
    reader.close()
    other.close()


def test_newer_layout_is_refused(tmp_path: Path) -> None:
    open_online(SQLiteConfig(path="o.db"), root=tmp_path).close()
    with sqlite3.connect(tmp_path / "o.db") as conn:
        conn.execute(f"PRAGMA user_version={LAYOUT_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer loopml"):
        open_online(SQLiteConfig(path="o.db"), root=tmp_path)


def test_closed_store_is_a_clear_error(tmp_path: Path) -> None:
    s = open_online(SQLiteConfig(path="o.db"), root=tmp_path)
    s.put_latest("t", [("k", 1.0, b"v")])
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.get_latest("t", ["k"])


def _child_merges() -> None:
    """Runs in a forked child: the store object came from the parent."""
    store = _FORKED[0]
    store.merge_tiles("t", [TileWrite("k", 0, b"10")], add, mark=("child", "done"))
    store.close()


_FORKED: list[OnlineStore] = []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_store_opened_before_fork_works_in_the_child(tmp_path: Path) -> None:
    """Pre-forking servers open the store in the parent; the child must not reuse its
    connections."""
    s = open_online(SQLiteConfig(path="o.db"), root=tmp_path)
    s.merge_tiles("t", [TileWrite("k", 0, b"1")], add)
    _FORKED[:] = [s]
    try:
        child = multiprocessing.get_context("fork").Process(target=_child_merges)
        child.start()
        child.join(30)
    finally:
        _FORKED.clear()
    assert child.exitcode == 0
    assert s.get_tiles("t", "k", [0]) == [b"11"]
    assert s.get_mark("child") == "done"
    s.merge_tiles("t", [TileWrite("k", 0, b"1")], add)  # the parent's connection still works
    assert s.get_tiles("t", "k", [0]) == [b"12"]
    s.close()
