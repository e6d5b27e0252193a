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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.data import _catalog as cat
from loopml.data._schema import ColumnSchema, apply_declarations
from loopml.errors import ConflictError, IntegrityError, NotFoundError, SchemaError, UsageError
from loopml.spec import SchemaPolicy
from loopml.storage import TMP_PREFIX, FileStore, SqlMetadataStore, new_id, owner_alive

QUARANTINE_DIR = "_quarantine"
BATCH_DIR = re.compile(r"^_batch=(b_[0-9a-z]+)$")
STALE_AFTER = timedelta(hours=1)
# Retyping a column in the lake's views is exact only from the text a file held, or as a
# widening; the rest would invent text the files never had (leading zeros, formatting).
_EXACT_RETYPES = {
    ("int64", "float64"),
    ("bool", "int64"),
    ("bool", "float64"),
    ("date", "timestamp"),
}


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

    def __init__(
        self,
        files: FileStore,
        store: SqlMetadataStore,
        policy_of: Callable[[str], SchemaPolicy] | None = None,
    ) -> None:
        self.files = files
        self.store = store
        # A source's declarations in loopml.yaml: types declared after ingestion retype views.
        self.policy_of = policy_of
        self._checked: set[tuple[str, ...]] = set()

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
        """Batches with rows in the lake: all committed ones, or those of a snapshot. A snapshot
        that includes batches removed by ``loopml data reset`` is refused: it can no longer be
        read as it was."""
        with self.store.read() as conn:
            committed = [b for b in cat.list_batches(conn) if b.lake_path]
            if snapshot is None:
                return committed
            wanted = set(cat.get_snapshot(conn, snapshot).batch_ids)
            gone = [b for b in cat.list_batches(conn, status="reset") if b.id in wanted]
        if gone:
            sources = sorted({b.source for b in gone})
            when = gone[0].origin.get("reset", {}).get("at", "")[:16].replace("T", " ")
            raise ConflictError(
                f"snapshot {snapshot} includes {len(gone)} batches of {', '.join(sources)} that "
                f"`loopml data reset` removed ({when}): it cannot be read as it was; take a new "
                "snapshot (`loopml data snapshot`)",
                details={"snapshot": snapshot, "sources": sources, "batches": len(gone)},
            )
        return [b for b in committed if b.id in wanted]

    # -------------------------------------------------------------------------------- DuckDB

    @contextmanager
    def connect(
        self,
        snapshot: str | None = None,
        *,
        only: set[str] | None = None,
        read_only: bool = False,
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection with one view per source over its batches in the lake (those of
        ``snapshot``, further limited to the batch ids in ``only`` when given).

        ``read_only``: once the views exist, the connection may open no file but the views'
        own, install or load no extension, and change no setting (for SQL a user wrote)."""
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")  # zoned timestamps come back as UTC, not local
            if not self.files.is_local:
                con.register_filesystem(self.files.fs)
            by_source: dict[str, list[str]] = {}
            landed: dict[str, list[tuple[str, str]]] = {}  # source -> (batch, its file)
            for b in self.batches(snapshot):
                if only is not None and b.id not in only:
                    continue
                assert b.lake_path is not None
                by_source.setdefault(b.source, []).append(self.files.uri(b.lake_path))
                landed.setdefault(b.source, []).append((b.id, b.lake_path))
            for source, paths in by_source.items():
                listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
                scan = f"read_parquet([{listing}], union_by_name = true, hive_partitioning = true)"
                casts = self._retypes(con, source, scan)
                columns = "*"
                if casts:
                    columns += (
                        " REPLACE ("
                        + ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in casts.items())
                        + ")"
                    )
                try:
                    con.execute(f'CREATE VIEW "{source}" AS SELECT {columns} FROM {scan}')
                except duckdb.IOException:
                    self._missing_files(source, landed.get(source, []))
                    raise
            if read_only:
                _lock_down(con, [p for paths in by_source.values() for p in paths])
            yield con
        finally:
            con.close()

    def _missing_files(self, source: str, landed: list[tuple[str, str]]) -> None:
        """Raise :class:`IntegrityError` naming the batches whose lake file is gone (the lake
        was changed outside loopml); return when every file is there (another I/O error)."""
        gone = [(batch, rel) for batch, rel in landed if not self.files.exists(rel)]
        if not gone:
            return
        batch, rel = gone[0]
        more = f" and {len(gone) - 1:,} more" if len(gone) > 1 else ""
        raise IntegrityError(
            f"batch {batch} of {source} is missing from the lake ({rel}){more}: the lake was "
            "changed outside loopml; its record says it landed, so queries over the source "
            "would be missing its rows. Restore the files, or reset the source and ingest again",
            details={"source": source, "batches": [b for b, _ in gone[:100]]},
        )

    def _retypes(self, con: duckdb.DuckDBPyConnection, source: str, scan: str) -> dict[str, str]:
        """Columns whose type loopml.yaml declares differently from the one the lake's batches
        were landed with: column -> the DuckDB type the view casts it to. Values that do not
        convert, and conversions that cannot be exact, are a :class:`SchemaError` naming the
        column and what to do."""
        if self.policy_of is None:
            return {}
        with self.store.read() as conn:
            active = cat.active_schema(conn, source)
        if active is None:
            return {}
        policy = self.policy_of(source)
        declared = apply_declarations(active.schema, policy)
        casts: dict[str, str] = {}
        for col in declared.columns:
            landed = active.schema.column(col.name)
            if landed is None or landed.type in (col.type, "null"):
                continue
            if landed.type != "string" and (landed.type, col.type) not in _EXACT_RETYPES:
                raise SchemaError(
                    f"source {source!r}: column '{col.name}' is declared {col.type} in "
                    f"loopml.yaml, but the lake holds it as {landed.type}, and the files' "
                    f"original text is not kept (leading zeros, formatting): run `loopml data "
                    f"reset {source}` and ingest the files again, or remove the declaration",
                    details={
                        "source": source,
                        "column": col.name,
                        "declared": col.type,
                        "landed": landed.type,
                    },
                )
            casts[col.name] = _duckdb_type(col)
            if landed.type == "string":
                self._check_text(con, source, scan, col, casts[col.name])
        return casts

    def _check_text(
        self, con: duckdb.DuckDBPyConnection, source: str, scan: str, col: ColumnSchema, to: str
    ) -> None:
        key = (source, scan, col.name, to)
        if key in self._checked:  # the same batches were checked in this process already
            return
        name = col.name.replace('"', '""')
        bad, example = con.execute(
            f'SELECT count(*), any_value("{name}") FROM {scan} '
            f'WHERE "{name}" IS NOT NULL AND TRY_CAST("{name}" AS {to}) IS NULL'
        ).fetchone() or (0, None)
        if bad:
            raise SchemaError(
                f"source {source!r}: column '{col.name}' is declared {col.type} in loopml.yaml, "
                f"but {bad} rows in the lake hold text that is not {col.type} (e.g. "
                f"{example!r}): fix the declaration, or run `loopml data reset {source}` and "
                "ingest the files again (rows that do not fit then go to quarantine)",
                details={
                    "source": source,
                    "column": col.name,
                    "declared": col.type,
                    "rows": int(bad),
                    "example": example,
                },
            )
        self._checked.add(key)

    def query(self, sql: str, snapshot: str | None = None, *, unsafe: bool = False) -> pa.Table:
        """Run SQL over the lake (each source is a view) and return an Arrow table.

        Only queries (``SELECT``, ``DESCRIBE``, ``SUMMARIZE``, ``EXPLAIN`` of a query) over the
        sources' views run: no other file is read, nothing is written, no extension is installed
        (a :class:`UsageError` says what was refused). ``unsafe=True`` runs any DuckDB SQL with
        this process's rights over the machine."""
        with self.connect(snapshot, read_only=not unsafe) as con:
            try:
                if not unsafe:
                    _only_queries(con, sql)
                relation = con.sql(sql)
            except duckdb.PermissionException as exc:
                raise UsageError(
                    f"query refused: it reaches outside the lake ({_what_file(exc)}); a lake "
                    f"query reads only the sources' views{_UNSAFE}"
                ) from None
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


_UNSAFE = (
    " (to run any DuckDB SQL with your rights over this machine: `loopml data query --unsafe`, "
    "or unsafe=True in Python)"
)
# Statements a read-only lake query may hold: DESCRIBE, SHOW and SUMMARIZE parse as SELECT.
_QUERIES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def _lock_down(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """From here on ``con`` reads only ``paths`` and cannot undo that (lock_configuration)."""
    listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    con.execute(f"SET allowed_paths = [{listing}]")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _only_queries(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse any statement but a query. The lake's own files are readable (the views read
    them), so a COPY or an EXPLAIN ANALYZE of one could overwrite them: both are refused."""
    for stmt in con.extract_statements(sql):
        text = stmt.query.strip().rstrip(";").strip()
        if stmt.type == duckdb.StatementType.EXPLAIN:
            inner = re.sub(r"(?is)^explain\s+(analy[sz]e\s+)?(\([^)]*\)\s*)?", "", text)
            ok = inner != text and all(
                s.type == duckdb.StatementType.SELECT for s in con.extract_statements(inner)
            )
        else:
            ok = stmt.type in _QUERIES
        if not ok:
            word = (text.split(None, 1) or ["?"])[0].upper()
            raise UsageError(
                f"query refused: {word} statements do not run in a lake query, which is "
                f"read-only over the sources' views (SELECT, DESCRIBE, SUMMARIZE, EXPLAIN)"
                f"{_UNSAFE}",
                details={"statement": word},
            )


def _what_file(exc: duckdb.Error) -> str:
    m = re.search(r'(?:file|directory) "([^"]*)"', str(exc))
    return f"it opens {m.group(1)!r}" if m else str(exc).splitlines()[0]


def _duckdb_type(col: ColumnSchema) -> str:
    match col.type:
        case "int64":
            return "BIGINT"
        case "float64":
            return "DOUBLE"
        case "bool":
            return "BOOLEAN"
        case "date":
            return "DATE"
        case "timestamp":
            return "TIMESTAMPTZ" if col.tz else "TIMESTAMP"
    return "VARCHAR"
