"""A batch held whole, and a release held again.

A batch fails as a whole (it cannot be read, its schema changed, a batch check failed): its
original file is kept in quarantine under one entry, so that ``loopml quarantine release`` can
ingest it again once the cause is dealt with. A release that is held again, or lands nothing,
keeps the entry it came from as it is.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from loopml.data import _catalog as cat
from loopml.data._batch_checks import ACCEPTABLE, CheckNote
from loopml.data._job import IngestJob, IngestResult, Landed
from loopml.data._lake import Lake, quarantine_dir
from loopml.data._proposals import propose
from loopml.data._schema import Schema, SchemaChange
from loopml.storage import SqlMetadataStore, new_id


def hold_whole(
    store: SqlMetadataStore,
    lake: Lake,
    job: IngestJob,
    batch_id: str,
    buf: pa.Buffer,
    batch_reasons: list[dict[str, Any]],
    *,
    rows_read: int,
    schema_version: int | None,
    proposal: tuple[list[SchemaChange], Schema] | None = None,
    row_reasons: list[dict[str, Any]] | None = None,
    notes: list[CheckNote] | None = None,
) -> IngestResult:
    """Quarantine the whole batch, keeping the original file so it can be released later.

    A release held again keeps its entry as it is (its records, where they came from, why they
    were held) and makes no new one: nothing landed, so there is nothing new to record but the
    reasons, which the result carries."""
    entry_id = job.release_of or new_id("q")
    batch_reasons = [_with_remedy(r, entry_id) for r in batch_reasons]
    if job.release_of is not None:
        if proposal is not None:
            with store.write() as conn:
                propose(conn, job.source, proposal[1], proposal[0], by=job.by, file=job.file)
        return still_held(
            store,
            lake,
            job,
            batch_id,
            rows_read=rows_read,
            reasons=[
                {"code": r["code"], "column": r["column"], "count": rows_read}
                for r in batch_reasons
            ],
            batch_reasons=batch_reasons,
            notes=notes or [],
        )
    name = os.path.basename(job.file) or "input"
    rel = f"{quarantine_dir(job.source, batch_id)}/{name}"
    data = job.original() if job.original is not None else buf.to_pybytes()
    lake.files.write_bytes(rel, data)
    reasons = [
        {"code": r["code"], "column": r["column"], "count": rows_read, "message": r["message"]}
        for r in batch_reasons
    ]
    with store.write() as conn:
        if proposal is not None:
            propose(conn, job.source, proposal[1], proposal[0], by=job.by, file=job.file)
        cat.commit_batch(
            conn,
            batch_id,
            rows_read=rows_read,
            rows_accepted=0,
            rows_quarantined=rows_read,
            schema_version=schema_version,
            lake_path=None,
            stats={"rows": rows_read, "parsed": 0, "nulls": {}, "delivery": job.delivery},
            warnings=[],
        )
        cat.add_quarantine(
            conn,
            entry_id=entry_id,
            batch_id=batch_id,
            source=job.source,
            kind="batch",
            rows=rows_read,
            reasons=reasons + [dict(r, also=True) for r in row_reasons or []],
            path=rel,
        )
        if job.on_commit is not None:
            job.on_commit(conn, Landed(batch_id, entry_id, {}))
    return IngestResult(
        source=job.source,
        file=job.file,
        batch_id=batch_id,
        status="held",
        rows_read=rows_read,
        rows_accepted=0,
        rows_quarantined=rows_read,
        reasons=[
            {"code": r["code"], "column": r["column"], "count": rows_read} for r in batch_reasons
        ],
        batch_reasons=batch_reasons,
        quarantine_id=entry_id,
        schema_version=schema_version,
        proposed_changes=[c.describe() for c in proposal[0]] if proposal else [],
        content_hash=job.content_hash,
        checks=notes or [],
    )


def _with_remedy(reason: dict[str, Any], entry_id: str) -> dict[str, Any]:
    """A check a user may overrule says how (the entry id is known only now)."""
    flag = ACCEPTABLE.get(reason["code"])
    if flag is None:
        return reason
    remedy = f"; to land it as it is: loopml quarantine release {entry_id} {flag}"
    return dict(reason, message=reason["message"] + remedy)


def still_held(
    store: SqlMetadataStore,
    lake: Lake,
    job: IngestJob,
    batch_id: str,
    *,
    rows_read: int,
    reasons: list[dict[str, Any]],
    batch_reasons: list[dict[str, Any]] | None = None,
    notes: list[CheckNote],
) -> IngestResult:
    """A release that lands nothing: its batch is undone, and its entry stays held, now for
    what held the release (a file held for a schema change may be held for its row count once
    the schema is accepted: that is what a later release must accept)."""
    assert job.release_of is not None
    lake.remove_batch_files(job.source, batch_id)
    held_for = [
        {"code": r["code"], "column": r.get("column"), "count": rows_read, "message": r["message"]}
        for r in batch_reasons or []
    ] or [dict(r) for r in reasons]
    with store.write() as conn:
        cat.abort_batch(conn, batch_id)
        cat.reheld_quarantine(conn, job.release_of, held_for)
    return IngestResult(
        source=job.source,
        file=job.file,
        batch_id=None,
        status="held",
        rows_read=rows_read,
        rows_accepted=0,
        rows_quarantined=rows_read,
        reasons=reasons,
        batch_reasons=batch_reasons or [],
        quarantine_id=job.release_of,
        content_hash=job.content_hash,
        checks=notes,
    )
