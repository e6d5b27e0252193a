"""Working with quarantine: list, show, export, release (re-validate and land what now passes)
and drop (discard on purpose, recorded)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from loopml.data import _catalog as cat
from loopml.data._batch_checks import ACCEPTABLE
from loopml.data._inflate import InflateLimit, inflate
from loopml.data._ingest import content_hash, ingest_buffer
from loopml.data._job import IngestJob, IngestResult, Landed
from loopml.data._lake import Lake
from loopml.data._quarantined import Positions
from loopml.errors import ConflictError, IntegrityError, ReadError, UsageError
from loopml.spec import SourceSpec
from loopml.storage import SqlMetadataStore


@dataclass
class QuarantineView:
    """One entry and (for row entries) its rows."""

    entry: cat.QuarantineRecord
    batch: cat.BatchRecord
    rows: pa.Table | None  # row, line, file, reasons, raw


class Quarantine:
    """The quarantine of a project."""

    def __init__(
        self,
        store: SqlMetadataStore,
        lake: Lake,
        source_spec: Callable[[str], SourceSpec],
        *,
        after_landing: Callable[[IngestResult], IngestResult] | None = None,
    ) -> None:
        self.store = store
        self.lake = lake
        self._source_spec = source_spec
        self._after_landing = after_landing

    def list(
        self, *, source: str | None = None, status: str | None = "held"
    ) -> list[cat.QuarantineRecord]:
        with self.store.read() as conn:
            return cat.list_quarantine(conn, source=source, status=status)

    def record(self, entry_id: str) -> QuarantineView:
        """An entry and its batch, without its rows (``rows`` is None)."""
        with self.store.read() as conn:
            entry = cat.get_quarantine(conn, entry_id)
            batch = cat.get_batch(conn, entry.batch_id)
        return QuarantineView(entry, batch, None)

    def show(self, entry_id: str) -> QuarantineView:
        """An entry, its batch and (for row entries) its rows; :class:`IntegrityError` when its
        rows' file is gone from the lake."""
        view = self.record(entry_id)
        entry = view.entry
        rows = None
        if entry.kind == "rows":
            try:
                rows = self.lake.read_parquet(entry.path)
            except FileNotFoundError:
                raise IntegrityError(
                    f"quarantine entry {entry_id}'s rows are missing from the lake "
                    f"({entry.path}): the lake was changed outside loopml; the entry's record "
                    f"and its reasons are whole (drop it to close it: loopml quarantine drop "
                    f"{entry_id} --reason ...)",
                    details={"quarantine": entry_id, "path": entry.path},
                ) from None
        return QuarantineView(entry, view.batch, rows)

    def export(self, entry_id: str, path: str | Path) -> int:
        """Write an entry's records in their original format, for fixing by hand; returns how
        many. Release the fixed file with ``release(entry_id, fixed=path)``."""
        data, fmt, _ = self._input(self.show(entry_id))
        Path(path).write_bytes(data)
        return _count(data, fmt)

    def release(
        self,
        entry_id: str,
        *,
        by: str,
        fixed: str | Path | None = None,
        accept: Collection[str] = (),
    ) -> IngestResult:
        """Validate an entry's records again with the current schema and spec; what passes lands
        in the lake, what fails becomes a new entry. The entry is marked released in the same
        transaction as the landing, so a release can never land rows twice.

        A release that lands nothing (held again as a whole, or every record still failing)
        leaves the entry held as it is and makes no new entry; the result says why.

        ``accept`` names batch checks that held the entry (``row_count``, ``null_rate``) whose
        verdict the user overrules: the file lands as it is, and the acceptance is recorded in
        the entry's resolution; an accepted null rate is the column's new baseline for later
        files."""
        view = self.show(entry_id)
        if view.entry.status != "held":
            raise ConflictError(
                f"quarantine entry {entry_id} is {view.entry.status}, not held",
                details={"quarantine": entry_id, "status": view.entry.status},
            )
        waived = _accepted(view.entry, accept)
        data, fmt, positions = self._input(view)
        if fixed is not None:
            try:
                data = Path(fixed).read_bytes()
            except OSError as exc:
                raise ReadError(f"cannot read the fixed file {fixed}: {exc.strerror}") from None
            if positions is not None and _count(data, fmt) != len(positions.rows):
                positions = None  # records were added or removed: number them afresh
        digest = content_hash(f"release:{entry_id}:".encode() + data)

        def resolve(conn: Any, landed: Landed) -> None:
            resolution: dict[str, Any] = {
                "batch": landed.batch_id,
                "residual": landed.quarantine_id,
                "fixed": str(fixed) if fixed else None,
            }
            if landed.accepted:
                resolution["accepted"] = landed.accepted
            cat.resolve_quarantine(conn, entry_id, status="released", by=by, resolution=resolution)

        whole = view.entry.kind == "batch"
        # A file held whole is still a delivery; rows of a file were checked with it, and a
        # stream micro-batch never was one.
        stats = view.batch.stats or {}
        delivery = whole and bool(stats.get("delivery", view.batch.origin.get("kind") == "file"))
        job = IngestJob(
            source=view.entry.source,
            spec=self._source_spec(view.entry.source),
            fmt=fmt,
            file=view.batch.file,
            content_hash=digest,
            by=by,
            origin={
                "kind": "release",
                "quarantine": entry_id,
                "batch": view.batch.id,
                "whole": whole,
            },
            positions=positions,
            delivery=delivery,
            accept=waived,
            release_of=entry_id,
            on_commit=resolve,
        )
        result = ingest_buffer(self.store, self.lake, pa.py_buffer(data), job)
        return self._after_landing(result) if self._after_landing is not None else result

    def select(
        self, *, source: str | None = None, code: str | None = None
    ) -> builtins.list[cat.QuarantineRecord]:
        """The held entries of a source (or of all), those held for reason ``code`` only."""
        entries = self.list(source=source)
        if code is None:
            return entries
        return [e for e in entries if any(r["code"] == code for r in e.reasons)]

    def drop(self, entry_id: str, *, by: str, reason: str) -> cat.QuarantineRecord:
        """Discard an entry on purpose. The record of it (who, when, why, how many rows) stays,
        and so do its files."""
        (dropped,) = self.drop_many([entry_id], by=by, reason=reason)
        return dropped

    def drop_many(
        self,
        entry_ids: Collection[str],
        *,
        by: str,
        reason: str,
        selection: str | None = None,
    ) -> builtins.list[cat.QuarantineRecord]:
        """Discard several entries in one decision: all of them, or none if any is not held.
        ``selection`` (how they were chosen, e.g. a filter) is recorded beside the reason."""
        if not reason.strip():
            raise ConflictError("dropping quarantined rows needs a reason (--reason)")
        resolution: dict[str, Any] = {"reason": reason}
        if selection:
            resolution["selection"] = selection
        with self.store.write() as conn:
            for entry_id in entry_ids:
                cat.resolve_quarantine(
                    conn, entry_id, status="dropped", by=by, resolution=resolution
                )
            return [cat.get_quarantine(conn, e) for e in entry_ids]

    def _input(self, view: QuarantineView) -> tuple[bytes, str, Positions | None]:
        """The entry's records as a file to ingest again, and where each came from."""
        entry, batch = view.entry, view.batch
        if entry.kind == "batch":
            data = self.lake.files.read_bytes(entry.path)
            if entry.path.endswith(".gz"):
                # Within the source's bounds, as on ingest: a held bomb stays held.
                try:
                    data = inflate(data, self._source_spec(entry.source).gzip).to_pybytes()
                except (InflateLimit, OSError) as exc:
                    raise ReadError(
                        f"quarantine entry {entry.id}: {exc}",
                        details={"quarantine": entry.id},
                    ) from None
            return data, batch.format, None
        assert view.rows is not None
        rows = view.rows
        raws = rows.column("raw").to_pylist()
        positions = Positions(
            files=rows.column("file").to_pylist(),
            lines=rows.column("line").to_pylist(),
            rows=rows.column("row").to_pylist(),
        )
        if batch.format == "csv":
            meta = rows.schema.metadata or {}
            header = meta.get(b"loopml.header", b"").decode()
            positions.header = header
            text = header + "\n" + "\n".join(raws) + "\n"
            return text.encode(), "csv", positions
        # JSON Lines keep their lines; Parquet rows were kept as JSON objects.
        return ("\n".join(raws) + "\n").encode(), "jsonl", positions


def _accepted(entry: cat.QuarantineRecord, accept: Collection[str]) -> frozenset[str]:
    """The checks a release may waive: those that held this entry."""
    wanted = frozenset(accept)
    unknown = sorted(wanted - set(ACCEPTABLE))
    if unknown:
        raise UsageError(
            f"cannot accept {', '.join(unknown)}: only the batch checks "
            f"{', '.join(sorted(ACCEPTABLE))} can be accepted",
            details={"accept": unknown},
        )
    held_for = {r["code"] for r in entry.reasons if not r.get("also")}
    missing = sorted(wanted - held_for)
    if missing:
        raise UsageError(
            f"quarantine entry {entry.id} is not held for {', '.join(missing)} "
            f"(it is held for: {', '.join(sorted(held_for))})",
            details={"quarantine": entry.id, "accept": missing},
        )
    return wanted


def _count(data: bytes, fmt: str) -> int:
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    return max(len(lines) - (1 if fmt == "csv" else 0), 0)


def default_user() -> str:
    """Who is acting: ``LOOPML_USER``, else the login name."""
    import getpass

    try:
        return os.environ.get("LOOPML_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
