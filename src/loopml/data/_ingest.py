"""Ingestion: one file in, every row out in exactly one place (the lake or quarantine).

The protocol, per batch:

1. claim: in one transaction, find the file's content hash (a committed batch with it makes the
   ingest a no-op) and insert a *pending* batch owned by this process;
2. read, type, check, in memory;
3. write the accepted rows and the quarantined rows under the batch's own paths (temporary file,
   fsync, rename);
4. commit: in one transaction, the batch becomes *committed* with its counts, its quarantine
   entry and any schema version.

A crash before 4 leaves a pending batch whose owner is dead; the next ingest of that source
(or ``loopml data recover``) deletes its files and marks it aborted, and the file can be ingested
again. Nothing reads a batch before its commit.

Beside it: the records a batch needs and yields (``_job``), a batch held whole (``_held``) and
what a batch asks of the schema (``_proposals``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.data import _catalog as cat
from loopml.data._batch_checks import BatchVerdict, batch_stats, check_batch, time_notes
from loopml.data._checks import Findings, check_rows
from loopml.data._held import hold_whole, still_held
from loopml.data._infer import infer_schema
from loopml.data._job import IngestJob, IngestResult, Landed
from loopml.data._lake import Lake, batch_path, quarantine_dir
from loopml.data._proposals import changes_of, is_lossless, proposals, propose
from loopml.data._quarantined import quarantine_table, reason_counts
from loopml.data._readers import Unreadable, read
from loopml.data._schema import Schema, SchemaChange, apply_changes, apply_declarations
from loopml.errors import ConflictError, ReadError
from loopml.storage import SqlMetadataStore, checkpoint, new_id, owner_alive, owner_token


def ingest_buffer(
    store: SqlMetadataStore, lake: Lake, buf: pa.Buffer, job: IngestJob
) -> IngestResult:
    """Ingest one file's bytes as one batch of ``job.source``."""
    started = time.perf_counter()
    claimed = _claim(store, lake, job)
    if isinstance(claimed, IngestResult):
        claimed.seconds = time.perf_counter() - started
        return claimed
    batch_id = claimed
    checkpoint("ingest.claimed")
    try:
        with ExitStack() as held:  # the source's ingest lock, once _process takes it
            result = _process(store, lake, buf, job, batch_id, held)
    except BaseException:
        _abandon(store, lake, job.source, batch_id)
        raise
    result.seconds = time.perf_counter() - started
    return result


def _claim(store: SqlMetadataStore, lake: Lake, job: IngestJob) -> str | IngestResult:
    lake.recover(job.source)
    batch_id = new_id("b")
    with store.write() as conn:
        existing = cat.batch_by_hash(conn, job.source, job.content_hash)
        if existing is not None and existing.status == "committed":
            return IngestResult(
                source=job.source,
                file=job.file,
                batch_id=existing.id,
                status="duplicate",
                rows_read=0,
                rows_accepted=0,
                rows_quarantined=0,
                content_hash=job.content_hash,
                warnings=[
                    {
                        "code": "duplicate_file",
                        "column": None,
                        "count": 0,
                        "message": f"this content was ingested already as batch {existing.id} "
                        f"({existing.rows_accepted} rows landed, {existing.rows_quarantined} "
                        "quarantined); nothing to do",
                    }
                ],
            )
        if existing is not None:  # pending, and recover() found its owner alive
            now = datetime.now(UTC)
            if owner_alive(
                existing.owner, started=existing.started_at, now=now, stale_after=_stale()
            ):
                raise ConflictError(
                    f"{job.file} is being ingested right now by {existing.owner} "
                    f"(batch {existing.id}); wait for it to finish",
                    details={"batch": existing.id, "owner": existing.owner},
                )
        cat.insert_pending(
            conn,
            batch_id=batch_id,
            source=job.source,
            content_hash=job.content_hash,
            file=job.file,
            format=job.fmt,
            origin=job.origin,
            owner=owner_token(),
        )
    return batch_id


def _stale() -> Any:
    from loopml.data._lake import STALE_AFTER

    return STALE_AFTER


def _abandon(store: SqlMetadataStore, lake: Lake, source: str, batch_id: str) -> None:
    """Undo a batch that failed before its commit (best effort: recover() finishes the job)."""
    try:
        lake.remove_batch_files(source, batch_id)
        with store.write() as conn:
            cat.abort_batch(conn, batch_id)
    except Exception:  # noqa: BLE001
        pass


def _process(
    store: SqlMetadataStore,
    lake: Lake,
    buf: pa.Buffer,
    job: IngestJob,
    batch_id: str,
    held: ExitStack,
) -> IngestResult:
    spec = job.spec
    policy = spec.schema_
    now = job.now or datetime.now(UTC)
    with store.read() as conn:
        active = cat.active_schema(conn, job.source)
        history = cat.recent_stats(conn, job.source, spec.checks.history_batches)
    stored = active.schema if active else None
    schema = apply_declarations(stored, policy) if stored else None

    findings: Findings
    changes: list[SchemaChange] = []
    new_schema: Schema | None = None  # a version to activate with this commit
    proposal: list[SchemaChange] = []
    try:
        if job.refused is not None:
            raise Unreadable(job.refused)
        outcome = read(buf, job.fmt, schema, spec.csv)
    except Unreadable as exc:
        if job.new_source:
            # Nothing to hold it against: a source is made by a file that can be read.
            raise ReadError(
                f"{job.file}: {exc}; source {job.source!r} was not created",
                details={"file": job.file, "source": job.source},
            ) from None
        return hold_whole(
            store,
            lake,
            job,
            batch_id,
            buf,
            [{"code": "unreadable", "column": None, "message": str(exc)}],
            rows_read=_count_records(buf, job),
            schema_version=active.version if active else None,
        )

    if schema is None:
        timestamp = spec.timestamp if spec.timestamp in outcome.table.column_names else None
        if timestamp is None and job.infer_timestamp:
            timestamp = _first_time_column(outcome.table)
        new_schema = infer_schema(
            outcome.table,
            policy=policy,
            timestamp=timestamp,
            primary_key=[k for k in spec.primary_key if k in outcome.table.column_names],
            entity_keys=spec.entity_keys,
        )
        schema = new_schema
    else:
        changes = changes_of(outcome, schema)
        lossless = all(is_lossless(c, policy) for c in changes)
        if changes and (policy.on_change == "accept" or lossless):
            assert stored is not None
            new_schema = apply_changes(stored, changes, {**outcome.new_columns, **outcome.typed})
            schema = apply_declarations(new_schema, policy)
            outcome = read(buf, job.fmt, schema, spec.csv)

    findings = Findings(n_rows=outcome.table.num_rows)
    blocking = [c for c in changes if c.kind != "new_categories"] if new_schema is None else []
    if blocking:
        findings.fail_batch(
            "schema_change",
            None,
            "; ".join(c.describe() for c in blocking)
            + (
                f". Review with `loopml schema diff {job.source}`, then "
                f"`loopml schema accept {job.source} --release`"
                if policy.on_change == "hold"
                else " (schema.on_change is reject: fix the producer, or change the policy)"
            ),
        )
        if policy.on_change == "hold":
            proposal = blocking
    lake_rel = batch_path(job.source, batch_id)
    eager: _EagerWrite | None = None
    if not blocking:
        # Most batches are clean: write them while the checks run, on the other core.
        if outcome.table.num_rows:
            eager = _EagerWrite(lake, lake_rel, outcome.table)
        if schema.primary_key:
            # From reading which batches are in the lake, through the check of this batch's keys
            # against them, to the commit, no other ingest of the source may land rows: two
            # files with the same keys would both pass the check. Released by the caller.
            held.enter_context(
                store.lock(
                    f"ingest:{job.source}",
                    what=f"another ingest of source {job.source!r} is running, and {job.file} waited",
                )
            )
            checkpoint("ingest.locked")
        try:
            findings = check_rows(
                outcome,
                schema,
                spec.checks,
                now=now,
                lake_keys=_lake_key_lookup(lake, store, job.source, schema),
            )
        except BaseException:
            if eager is not None:
                eager.join()  # before the caller deletes the batch's files
            raise
    bad = findings.bad_rows()
    stats = batch_stats(outcome.table, outcome.rows_read, bad, delivery=job.delivery)
    verdict = BatchVerdict()
    if not findings.batch:
        verdict = check_batch(
            stats, history, spec.checks, findings, delivery=job.delivery, accept=job.accept
        )
    if verdict.accepted.get("null_rate"):
        # The accepted rate is where the column's history starts for later files.
        stats["baseline"] = {"null_rate": verdict.accepted["null_rate"]}
    notes = verdict.notes + time_notes(spec.checks, schema)
    proposal += proposals(findings, schema, policy)
    if eager is not None:
        eager.wait()
        checkpoint("ingest.lake_written")
        if findings.batch or len(bad):
            lake.files.delete(lake_rel)

    if findings.batch:
        return hold_whole(
            store,
            lake,
            job,
            batch_id,
            buf,
            findings.batch,
            rows_read=outcome.rows_read,
            schema_version=active.version if active else None,
            proposal=(proposal, stored) if proposal and stored else None,
            row_reasons=reason_counts(findings, outcome),
            notes=notes,
        )

    table = outcome.table
    if len(bad):
        keep = np.ones(table.num_rows, dtype=bool)
        keep[bad] = False
        table = table.filter(pa.array(keep))
    if job.release_of is not None and table.num_rows == 0:
        return still_held(
            store,
            lake,
            job,
            batch_id,
            rows_read=outcome.rows_read,
            reasons=reason_counts(findings, outcome),
            notes=notes,
        )
    # The event-time range of the rows that landed: which batches fed a window, from metadata.
    stats.update(_time_range(table, spec.timestamp or schema.timestamp))
    if len(bad) and table.num_rows:
        lake.write_parquet(lake_rel, table)
    landed = lake_rel if table.num_rows else None
    q_rows = len(bad) + len(outcome.rejected)
    q_rel = None
    if q_rows:
        q_rel = f"{quarantine_dir(job.source, batch_id)}/rows.parquet"
        lake.write_parquet(
            q_rel, quarantine_table(outcome, findings, bad, file=job.file, positions=job.positions)
        )
        checkpoint("ingest.quarantine_written")
    reasons = reason_counts(findings, outcome)

    entry_id = new_id("q") if q_rows else None
    checkpoint("ingest.before_commit")
    with store.write() as conn:
        version = active.version if active else None
        if new_schema is not None:
            if active is None:
                note = "inferred from the first batch"
            elif policy.on_change == "accept":
                note = "changes accepted on ingest (schema.on_change: accept)"
            elif all(c.kind == "typed" for c in changes):
                note = "empty columns typed by their first values"
            else:
                note = "lossless change accepted on ingest (schema.widen_numbers)"
            version = cat.add_schema(
                conn,
                job.source,
                new_schema,
                status="active",
                by=job.by,
                note=f"{note} ({job.file})",
                changes=changes,
            )
        if proposal and stored is not None:
            propose(conn, job.source, stored, proposal, by=job.by, file=job.file)
        cat.commit_batch(
            conn,
            batch_id,
            rows_read=outcome.rows_read,
            rows_accepted=table.num_rows,
            rows_quarantined=q_rows,
            schema_version=version,
            lake_path=landed,
            stats=stats,
            warnings=findings.warnings,
        )
        if entry_id is not None:
            assert q_rel is not None
            cat.add_quarantine(
                conn,
                entry_id=entry_id,
                batch_id=batch_id,
                source=job.source,
                kind="rows",
                rows=q_rows,
                reasons=reasons,
                path=q_rel,
            )
        if job.on_commit is not None:
            job.on_commit(conn, Landed(batch_id, entry_id, verdict.accepted))
    checkpoint("ingest.committed")
    return IngestResult(
        source=job.source,
        file=job.file,
        batch_id=batch_id,
        status="partial" if q_rows else "landed",
        rows_read=outcome.rows_read,
        rows_accepted=table.num_rows,
        rows_quarantined=q_rows,
        reasons=reasons,
        warnings=findings.warnings,
        quarantine_id=entry_id,
        schema_version=version,
        schema_changes=[c.describe() for c in changes] if new_schema is not None else [],
        proposed_changes=[c.describe() for c in proposal] if stored is not None else [],
        content_hash=job.content_hash,
        checks=notes,
        accepted=verdict.accepted,
    )


def _time_range(table: pa.Table, column: str | None) -> dict[str, str]:
    """``time_min`` and ``time_max`` (ISO 8601) of the timestamp column among ``table``'s
    rows; nothing without the column, a time type or a value."""
    if column is None or column not in table.column_names or not table.num_rows:
        return {}
    values = table.column(column)
    if not (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)):
        return {}
    found = pc.min_max(values)
    low, high = found["min"].as_py(), found["max"].as_py()
    if low is None or high is None:
        return {}
    return {"time_min": _iso(low), "time_max": _iso(high)}


def _iso(x: Any) -> str:
    if isinstance(x, datetime) and x.tzinfo is None:
        x = x.replace(tzinfo=UTC)
    return str(x.isoformat())


def _first_time_column(table: pa.Table) -> str | None:
    for f in table.schema:
        if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type):
            return str(f.name)
    return None


class _EagerWrite:
    """Write a batch's Parquet file on a background thread (Arrow releases the GIL)."""

    def __init__(self, lake: Lake, rel: str, table: pa.Table) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(lake, rel, table), daemon=True)
        self._thread.start()

    def _run(self, lake: Lake, rel: str, table: pa.Table) -> None:
        try:
            lake.write_parquet(rel, table)
        except BaseException as exc:  # noqa: BLE001
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _count_records(buf: pa.Buffer, job: IngestJob) -> int:
    """Records in a file that could not be parsed: its non-blank lines (less a CSV header)."""
    if job.fmt == "parquet":
        return 0
    from loopml.data._lines import LineIndex

    header = 1 if job.fmt == "csv" and job.spec.csv.header else 0
    return len(LineIndex(buf, header_lines=header).data_lines())


def _lake_key_lookup(
    lake: Lake, store: SqlMetadataStore, source: str, schema: Schema
) -> Callable[[pa.Table], list[tuple[int, str]]] | None:
    """A function finding the rows of a batch whose primary key is already in the lake."""
    keys = schema.primary_key
    if not keys:
        return None
    with store.read() as conn:
        landed = [b for b in cat.list_batches(conn, source=source) if b.lake_path]
    if not landed:
        return None

    def lookup(key_table: pa.Table) -> list[tuple[int, str]]:
        paths = ", ".join(
            "'" + lake.files.uri(b.lake_path or "").replace("'", "''") + "'" for b in landed
        )
        on = " AND ".join(f'k."{k}" = l."{k}"' for k in keys)
        cols = ", ".join(f'"{k}"' for k in keys)
        where = ""
        ts = schema.timestamp
        if ts in keys:
            # Parquet row-group statistics skip everything outside the batch's time range.
            where = (
                f'WHERE "{ts}" BETWEEN (SELECT min("{ts}") FROM k) AND (SELECT max("{ts}") FROM k)'
            )
        con = duckdb.connect()
        try:
            if not lake.files.is_local:
                con.register_filesystem(lake.files.fs)
            con.register("k", key_table)
            rows = con.execute(
                f"""SELECT k.__row, l._batch FROM k JOIN (
                        SELECT {cols}, _batch FROM read_parquet([{paths}], hive_partitioning = true,
                        union_by_name = true) {where}) l ON {on}
                    ORDER BY k.__row"""
            ).fetchall()
        finally:
            con.close()
        seen: set[int] = set()
        out = []
        for row, batch in rows:
            if row not in seen:
                seen.add(row)
                out.append((int(row), str(batch)))
        return out

    return lookup


def content_hash(buf: pa.Buffer | bytes) -> str:
    return hashlib.sha256(memoryview(buf)).hexdigest()
