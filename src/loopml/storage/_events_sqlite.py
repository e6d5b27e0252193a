"""The embedded event log: Redis Streams' consumer-group semantics in one SQLite file.

Several processes append and read the same file. Every write (append, read, ack, claim) is one
``BEGIN IMMEDIATE`` transaction, so the sequence numbers, the group's read pointer and its pending
list change together or not at all: a consumer that dies between reading and acknowledging leaves
its entries pending, where ``read`` gives them back to it and ``claim`` gives them to another.

The standard-library ``sqlite3`` is used directly (not SQLAlchemy): reads and appends are on the
path of every event, and the driver is all they need.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loopml.errors import BackendUnavailable, ConflictError, StorageError, UsageError
from loopml.spec import SQLiteConfig
from loopml.storage._events import Event

# Bumped when the tables change; a file written by a newer layout is refused, not misread.
_LAYOUT = 1

# Rows per INSERT statement: 4 parameters each, within SQLite's oldest limit of 999.
_ROWS_PER_INSERT = 240


@functools.lru_cache(maxsize=8)
def _insert_rows(n: int) -> str:
    return "INSERT INTO events (stream, seq, payload, appended_at) VALUES " + ", ".join(
        ["(?, ?, ?, ?)"] * n
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    appended_at REAL NOT NULL,
    PRIMARY KEY (stream, seq)
);
CREATE TABLE IF NOT EXISTS groups (
    stream TEXT NOT NULL,
    grp TEXT NOT NULL,
    last_delivered_seq INTEGER NOT NULL,
    PRIMARY KEY (stream, grp)
);
CREATE TABLE IF NOT EXISTS pending (
    stream TEXT NOT NULL,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    delivered_at REAL NOT NULL,
    deliveries INTEGER NOT NULL,
    PRIMARY KEY (stream, grp, seq)
);
CREATE INDEX IF NOT EXISTS pending_by_consumer ON pending (stream, grp, consumer, seq);
"""

# A blocked read polls: cheap read-only checks, first often (a busy stream answers at once),
# then less often so that idle consumers do not keep the file busy.
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.02

_ID = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)


class SQLiteEventLog:
    """An :class:`~loopml.storage.EventLog` in an SQLite file (WAL; any number of processes).

    Ids are ``"{seq}-0"``, ``seq`` counting from 1 along each stream, so that
    :func:`~loopml.storage.id_order` orders them as it orders Redis ids.

    >>> import tempfile
    >>> log = SQLiteEventLog(SQLiteConfig(path="events.db"), root=Path(tempfile.mkdtemp()))
    >>> log.append("clicks", [b"a", b"b"])
    ['1-0', '2-0']
    >>> [e.payload for e in log.read("clicks", "features", "worker-1")]
    [b'a', b'b']
    >>> log.ack("clicks", "features", ["1-0", "2-0"])
    2
    >>> log.close()
    """

    def __init__(self, config: SQLiteConfig, *, root: Path) -> None:
        path = Path(config.path)
        if not path.is_absolute():
            path = root / path
        self.path = path
        self._busy_timeout_s = config.busy_timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as conn:
            layout = conn.execute("PRAGMA user_version").fetchone()[0]
            if layout > _LAYOUT:
                raise StorageError(
                    f"the event log {self.path} was written by a newer loopml (layout {layout}, "
                    f"this one knows {_LAYOUT}): upgrade loopml",
                    details={"store": str(self.path)},
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if layout < _LAYOUT:
                conn.execute(f"PRAGMA user_version = {_LAYOUT}")

    def describe(self) -> str:
        """Where the log is."""
        return f"sqlite:///{self.path}"

    # -- the protocol ---------------------------------------------------------------------------

    def append(self, stream: str, payloads: Sequence[bytes]) -> list[str]:
        """Add payloads at the end of ``stream`` in one transaction: all of them or none."""
        _check_name("stream", stream)
        if not payloads:
            return []
        with self._write() as conn:
            last = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE stream = ?", (stream,)
            ).fetchone()[0]
            now = time.time()
            # Many rows per INSERT: executemany would step (and release and retake the GIL)
            # once a row, and a serving worker's log writer doing so stalls its requests.
            for start in range(0, len(payloads), _ROWS_PER_INSERT):
                chunk = payloads[start : start + _ROWS_PER_INSERT]
                params: list[Any] = []
                for i, p in enumerate(chunk, start=last + start + 1):
                    params += (stream, i, bytes(p), now)
                conn.execute(_insert_rows(len(chunk)), params)
        return [f"{seq}-0" for seq in range(last + 1, last + len(payloads) + 1)]

    def read(
        self, stream: str, group: str, consumer: str, *, count: int = 1000, block_ms: int = 0
    ) -> list[Event]:
        """Up to ``count`` entries: this consumer's pending ones first, else new ones.

        A blocked read polls with read-only queries and takes the write lock only once there is
        something to deliver, so waiting consumers do not hold up appenders.
        """
        _check_name("stream", stream)
        _check_name("group", group)
        _check_name("consumer", consumer)
        if count < 1:
            raise UsageError(
                f"read count must be at least 1, got {count}", details={"count": count}
            )
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        sleep_s = _POLL_FIRST_S
        while True:
            if self._may_deliver(stream, group, consumer):
                events = self._deliver(stream, group, consumer, count)
                if events:
                    return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(sleep_s, remaining))
            sleep_s = min(sleep_s * 2, _POLL_MAX_S)

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Remove entries from the group's pending list; returns how many were there."""
        seqs = [_seq(i) for i in ids]
        if not seqs:
            return 0
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "DELETE FROM pending WHERE stream = ? AND grp = ? AND seq = ?",
                ((stream, group, s) for s in seqs),
            )
            return conn.total_changes - before

    def claim(self, stream: str, group: str, consumer: str, *, min_idle_ms: int) -> list[Event]:
        """Move other consumers' entries delivered at least ``min_idle_ms`` ago to ``consumer``."""
        _check_name("consumer", consumer)
        now = time.time()
        with self._write() as conn:
            rows = conn.execute(
                "SELECT p.seq, e.payload FROM pending p JOIN events e "
                "ON e.stream = p.stream AND e.seq = p.seq "
                "WHERE p.stream = ? AND p.grp = ? AND p.consumer <> ? AND p.delivered_at <= ? "
                "ORDER BY p.seq",
                (stream, group, consumer, now - max(min_idle_ms, 0) / 1000),
            ).fetchall()
            conn.executemany(
                "UPDATE pending SET consumer = ?, delivered_at = ?, deliveries = deliveries + 1 "
                "WHERE stream = ? AND grp = ? AND seq = ?",
                ((consumer, now, stream, group, seq) for seq, _ in rows),
            )
        return [Event(id=f"{seq}-0", payload=payload) for seq, payload in rows]

    def pending(self, stream: str, group: str) -> int:
        with self._read() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM pending WHERE stream = ? AND grp = ?", (stream, group)
            ).fetchone()
        return int(row[0])

    def length(self, stream: str) -> int:
        with self._read() as conn:
            row = conn.execute("SELECT COUNT(*) FROM events WHERE stream = ?", (stream,)).fetchone()
        return int(row[0])

    def delete_stream(self, stream: str) -> None:
        """Remove the stream with its groups and their pending entries."""
        with self._write() as conn:
            for table in ("pending", "groups", "events"):
                conn.execute(f"DELETE FROM {table} WHERE stream = ?", (stream,))

    def close(self) -> None:
        """Close every thread's connection; the log cannot be used afterwards."""
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()

    # -- internals ------------------------------------------------------------------------------

    def _may_deliver(self, stream: str, group: str, consumer: str) -> bool:
        """Whether :meth:`_deliver` could return something (read-only, takes no lock).

        A missing group counts as "maybe": creating it needs the write transaction anyway.
        """
        with self._read() as conn:
            row = conn.execute(
                "SELECT last_delivered_seq FROM groups WHERE stream = ? AND grp = ?",
                (stream, group),
            ).fetchone()
            if row is None:
                return True
            mine = conn.execute(
                "SELECT 1 FROM pending WHERE stream = ? AND grp = ? AND consumer = ? LIMIT 1",
                (stream, group, consumer),
            ).fetchone()
            if mine is not None:
                return True
            new = conn.execute(
                "SELECT 1 FROM events WHERE stream = ? AND seq > ? LIMIT 1", (stream, row[0])
            ).fetchone()
            return new is not None

    def _deliver(self, stream: str, group: str, consumer: str, count: int) -> list[Event]:
        now = time.time()
        with self._write() as conn:
            rows = conn.execute(
                "SELECT p.seq, e.payload FROM pending p JOIN events e "
                "ON e.stream = p.stream AND e.seq = p.seq "
                "WHERE p.stream = ? AND p.grp = ? AND p.consumer = ? ORDER BY p.seq LIMIT ?",
                (stream, group, consumer, count),
            ).fetchall()
            if rows:
                # Redelivery, as after a crash: the entries stay this consumer's, freshly
                # delivered, so that claim() does not take them while they are being handled.
                conn.executemany(
                    "UPDATE pending SET delivered_at = ?, deliveries = deliveries + 1 "
                    "WHERE stream = ? AND grp = ? AND seq = ?",
                    ((now, stream, group, seq) for seq, _ in rows),
                )
            else:
                conn.execute(
                    "INSERT OR IGNORE INTO groups (stream, grp, last_delivered_seq) "
                    "VALUES (?, ?, 0)",
                    (stream, group),
                )
                last = conn.execute(
                    "SELECT last_delivered_seq FROM groups WHERE stream = ? AND grp = ?",
                    (stream, group),
                ).fetchone()[0]
                rows = conn.execute(
                    "SELECT seq, payload FROM events WHERE stream = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (stream, last, count),
                ).fetchall()
                if rows:
                    conn.executemany(
                        "INSERT INTO pending (stream, grp, seq, consumer, delivered_at, deliveries)"
                        " VALUES (?, ?, ?, ?, ?, 1)",
                        ((stream, group, seq, consumer, now) for seq, _ in rows),
                    )
                    conn.execute(
                        "UPDATE groups SET last_delivered_seq = ? WHERE stream = ? AND grp = ?",
                        (rows[-1][0], stream, group),
                    )
        return [Event(id=f"{seq}-0", payload=payload) for seq, payload in rows]

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections must not be shared between threads)."""
        if self._closed:
            raise UsageError(f"the event log {self.path} is closed")
        if os.getpid() != self._pid:
            # A forked child must not use its parent's connections; it opens its own.
            with self._lock:
                self._pid, self._conns = os.getpid(), []
                self._local = threading.local()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._translate():
                conn = sqlite3.connect(
                    self.path,
                    timeout=self._busy_timeout_s,
                    isolation_level=None,  # transactions are begun explicitly below
                    check_same_thread=False,  # only so that close() may close it
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock before the first read, so the read-then-write of
        # max(seq) or of the group's pointer cannot interleave with another writer's.
        conn = self._conn()
        with self._translate():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._translate():
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            details = {"store": str(self.path)}
            if "locked" in text or "busy" in text:
                raise ConflictError(
                    f"the event log {self.path} stayed locked by another process for more than "
                    f"{self._busy_timeout_s} s: {text}",
                    details=details,
                ) from exc
            raise BackendUnavailable(
                f"event log {self.path} failed: {text}", details=details
            ) from exc


def _check_name(kind: str, name: str) -> None:
    if not name:
        raise UsageError(f"the {kind} name must not be empty", details={kind: name})


def _seq(event_id: str) -> int:
    """The sequence number in ``"{seq}-0"``; any other well-formed id names no entry here."""
    match = _ID.fullmatch(event_id)
    if match is None:
        raise UsageError(
            f"{event_id!r} is not an event id (expected 'N-M', as returned by append)",
            details={"id": event_id},
        )
    major, minor = match.groups()
    # An id this log never hands out ("N-M" with M > 0) matches nothing; -1 is never a seq.
    return int(major) if minor is None or int(minor) == 0 else -1
