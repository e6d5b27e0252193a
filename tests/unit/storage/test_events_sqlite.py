from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.spec import SQLiteConfig
from loopml.storage import EventLog, open_events
from loopml.storage._events_sqlite import SQLiteEventLog
from loopml.testing import EventLogContract


class TestSQLiteEventLog(EventLogContract):
    @pytest.fixture
    def log(self, tmp_path: Path) -> Iterator[EventLog]:
        log = open_events(SQLiteConfig(path="events.db"), root=tmp_path)
        yield log
        log.close()


def test_relative_path_is_under_root_and_uses_wal(tmp_path: Path) -> None:
    log = open_events(SQLiteConfig(path="sub/events.db"), root=tmp_path)
    assert isinstance(log, SQLiteEventLog) and log.path == tmp_path / "sub" / "events.db"
    log.append("s", [b"x"])
    log.close()
    with sqlite3.connect(tmp_path / "sub" / "events.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_logs_on_one_file_share_groups(tmp_path: Path) -> None:
    """Two opens of one file behave as two processes would: one group, one pending list."""
    first = open_events(SQLiteConfig(path="e.db"), root=tmp_path)
    second = open_events(SQLiteConfig(path="e.db"), root=tmp_path)
    try:
        ids = first.append("s", [b"a", b"b", b"c"])
        assert [e.id for e in second.read("s", "g", "c2", count=2)] == ids[:2]
        assert [e.id for e in first.read("s", "g", "c1")] == ids[2:]
        assert first.pending("s", "g") == 3
        assert second.ack("s", "g", ids) == 3
    finally:
        first.close()
        second.close()


def test_a_newer_layout_is_refused(tmp_path: Path) -> None:
    from loopml.errors import StorageError

    open_events(SQLiteConfig(path="e.db"), root=tmp_path).close()
    with sqlite3.connect(tmp_path / "e.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StorageError, match="newer loopml"):
        open_events(SQLiteConfig(path="e.db"), root=tmp_path)


def test_append_of_100k_small_payloads_is_fast(tmp_path: Path) -> None:
    log = open_events(SQLiteConfig(path="e.db"), root=tmp_path)
    payloads = [b"x" * 50] * 100_000
    started = time.perf_counter()
    ids = log.append("s", payloads)
    elapsed = time.perf_counter() - started
    log.close()
    assert len(ids) == 100_000 and ids[-1] == "100000-0"
    assert elapsed < 1.0, f"append of 100k events took {elapsed:.2f} s"


def test_another_process_appends_while_this_one_reads(tmp_path: Path) -> None:
    total, batch = 3_000, 30
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from loopml.spec import SQLiteConfig
        from loopml.storage import open_events

        log = open_events(SQLiteConfig(path="e.db"), root=Path({str(tmp_path)!r}))
        for start in range(0, {total}, {batch}):
            log.append("s", [f"e{{i}}".encode() for i in range(start, start + {batch})])
            time.sleep(0.002)  # spread the writes over the reader's pages
        log.close()
        """
    )
    log = open_events(SQLiteConfig(path="e.db"), root=tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    seen: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(seen) < total and time.monotonic() < deadline:
            page = log.read("s", "g", "c", count=500, block_ms=200)
            seen += [e.payload for e in page]
            log.ack("s", "g", [e.id for e in page])
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
        seen += [e.payload for e in log.read("s", "g", "c", count=total)]
    finally:
        if writer.poll() is None:
            writer.kill()
        log.close()
    assert seen == [f"e{i}".encode() for i in range(total)]
    assert log_pending(tmp_path) == 0


def log_pending(root: Path) -> int:
    log = open_events(SQLiteConfig(path="e.db"), root=root)
    try:
        return log.pending("s", "g")
    finally:
        log.close()
