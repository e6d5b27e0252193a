"""The lake: Parquet batches per source, quarantined rows beside them, snapshots, and DuckDB.

Layout under the lake folder::

    <source>/_batch=<batch id>/data.parquet       rows that passed, one file per batch
    _quarantine/<source>/<batch id>/rows.parquet  rows that failed, with reasons and original text
    _quarantine/<source>/<batch id>/<file name>   a batch held whole: the original file

A batch's files are written before its metadata commit; until that commit nothing reads them, and
:meth:`Lake.recover` removes the files of a batch whose process died before committing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.data import _catalog as cat
from loopml.errors import NotFoundError, UsageError
from loopml.storage import FileStore, SqlMetadataStore, new_id
from loopml.storage._files import TMP_PREFIX
from loopml.storage._owner import owner_alive

QUARANTINE_DIR = "_quarantine"
BATCH_DIR = re.compile(r"^_batch=(b_[0-9a-z]+)$")
STALE_AFTER = timedelta(hours=1)


def fetch_arrow(result: duckdb.DuckDBPyRelation) -> pa.Table:
    """A DuckDB relation as an Arrow table (the method's name changed in DuckDB 1.4)."""
    method = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return method()


def batch_path(source: str, batch_id: str) -> str:
    return f"{source}/_batch={batch_id}/data.parquet"


def quarantine_dir(source: str, batch_id: str) -> str:
    return f"{QUARANTINE_DIR}/{source}/{batch_id}"


class Lake:
    """Reading and writing the lake, and snapshots of it."""

    def __init__(self, files: FileStore, store: SqlMetadataStore) -> None:
        self.files = files
        self.store = store

    # ------------------------------------------------------------------------------ writing

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        """Write ``table`` to ``rel`` atomically (temporary file, fsync, rename)."""
        if self.files.is_local:
            self.files.write_atomic(rel, lambda path: pq.write_table(table, path))
        else:
            from pyarrow.fs import FSSpecHandler, PyFileSystem

            fs = PyFileSystem(FSSpecHandler(self.files.fs))
            self.files.write_atomic(rel, lambda path: pq.write_table(table, path, filesystem=fs))

    def read_parquet(self, rel: str) -> pa.Table:
        if self.files.is_local:
            return pq.read_table(self.files.path(rel))
        with self.files.open_read(rel) as f:
            return pq.read_table(f)

    def remove_batch_files(self, source: str, batch_id: str) -> None:
        self.files.delete(f"{source}/_batch={batch_id}", recursive=True)
        self.files.delete(quarantine_dir(source, batch_id), recursive=True)

    # ------------------------------------------------------------------------------ recovery

    def recover(self, source: str, *, now: datetime | None = None) -> list[str]:
        """Abort the pending batches of dead processes and delete files no batch owns.

        Returns the ids of the batches it aborted. Safe to run at any time, from any number of
        processes: files of live pending batches are left alone.
        """
        now = now or datetime.now(UTC)
        aborted: list[str] = []
        with self.store.read() as conn:
            pending = cat.list_batches(conn, source=source, status="pending")
        for b in pending:
            if owner_alive(b.owner, started=b.started_at, now=now, stale_after=STALE_AFTER):
                continue
            self.remove_batch_files(source, b.id)
            with self.store.write() as conn:
                cat.abort_batch(conn, b.id)
            aborted.append(b.id)
        with self.store.read() as conn:
            live = {
                b.id
                for status in ("committed", "pending")
                for b in cat.list_batches(conn, source=source, status=status)
            }
        for name in self.files.list(source):
            m = BATCH_DIR.match(name)
            if m and m.group(1) not in live:
                self.files.delete(f"{source}/{name}", recursive=True)
            elif m:
                self._remove_dead_temps(f"{source}/{name}")
        qdir = f"{QUARANTINE_DIR}/{source}"
        for name in self.files.list(qdir):
            if name.startswith("b_") and name not in live:
                self.files.delete(f"{qdir}/{name}", recursive=True)
            elif name.startswith("b_"):
                self._remove_dead_temps(f"{qdir}/{name}")
        return aborted

    def _remove_dead_temps(self, folder: str) -> None:
        import os

        for name in self.files.list(folder):
            if not name.startswith(TMP_PREFIX):
                continue
            pid = name[len(TMP_PREFIX) :].split("-", 1)[0]
            try:
                os.kill(int(pid), 0)
            except (ProcessLookupError, ValueError):
                self.files.delete(f"{folder}/{name}")
            except PermissionError:
                pass

    # ----------------------------------------------------------------------------- snapshots

    def snapshot(self, *, by: str, note: str = "") -> cat.SnapshotRecord:
        """Record the set of committed batches that hold rows, across all sources."""
        with self.store.write() as conn:
            ids = [b.id for b in cat.list_batches(conn) if b.lake_path]
            return cat.create_snapshot(conn, new_id("s"), ids, by=by, note=note)

    def batches(self, snapshot: str | None = None) -> list[cat.BatchRecord]:
        """Batches with rows in the lake: all committed ones, or those of a snapshot."""
        with self.store.read() as conn:
            committed = [b for b in cat.list_batches(conn) if b.lake_path]
            if snapshot is None:
                return committed
            wanted = set(cat.get_snapshot(conn, snapshot).batch_ids)
        return [b for b in committed if b.id in wanted]

    # -------------------------------------------------------------------------------- DuckDB

    @contextmanager
    def connect(
        self, snapshot: str | None = None, *, only: set[str] | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection with one view per source over its batches in the lake (those of
        ``snapshot``, further limited to the batch ids in ``only`` when given)."""
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")  # zoned timestamps come back as UTC, not local
            if not self.files.is_local:
                con.register_filesystem(self.files.fs)
            by_source: dict[str, list[str]] = {}
            for b in self.batches(snapshot):
                if only is not None and b.id not in only:
                    continue
                assert b.lake_path is not None
                by_source.setdefault(b.source, []).append(self.files.uri(b.lake_path))
            for source, paths in by_source.items():
                listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
                con.execute(
                    f'CREATE VIEW "{source}" AS SELECT * FROM read_parquet([{listing}], '
                    "union_by_name = true, hive_partitioning = true)"
                )
            yield con
        finally:
            con.close()

    def query(self, sql: str, snapshot: str | None = None) -> pa.Table:
        """Run SQL over the lake (each source is a view) and return an Arrow table."""
        with self.connect(snapshot) as con:
            try:
                relation = con.sql(sql)
            except duckdb.CatalogException as exc:
                sources = sorted({b.source for b in self.batches(snapshot)})
                raise NotFoundError(
                    f"{str(exc).splitlines()[0]} "
                    f"(the lake has: {', '.join(sources) or 'nothing yet'})"
                ) from None
            except duckdb.Error as exc:
                raise UsageError(f"query failed: {str(exc).splitlines()[0]}") from None
            if relation is None:  # a statement, not a query
                return pa.table({})
            return fetch_arrow(relation)
