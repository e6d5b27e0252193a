"""Working with quarantine: list, show, export, release (re-validate and land what now passes)
and drop (discard on purpose, recorded)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from loopml.data import _catalog as cat
from loopml.data._ingest import IngestJob, IngestResult, Positions, content_hash, ingest_buffer
from loopml.data._lake import Lake
from loopml.errors import ConflictError, ReadError
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
    ) -> None:
        self.store = store
        self.lake = lake
        self._source_spec = source_spec

    def list(
        self, *, source: str | None = None, status: str | None = "held"
    ) -> list[cat.QuarantineRecord]:
        with self.store.read() as conn:
            return cat.list_quarantine(conn, source=source, status=status)

    def show(self, entry_id: str) -> QuarantineView:
        with self.store.read() as conn:
            entry = cat.get_quarantine(conn, entry_id)
            batch = cat.get_batch(conn, entry.batch_id)
        rows = self.lake.read_parquet(entry.path) if entry.kind == "rows" else None
        return QuarantineView(entry, batch, rows)

    def export(self, entry_id: str, path: str | Path) -> int:
        """Write an entry's records in their original format, for fixing by hand; returns how
        many. Release the fixed file with ``release(entry_id, fixed=path)``."""
        data, fmt, _ = self._input(self.show(entry_id))
        Path(path).write_bytes(data)
        return _count(data, fmt)

    def release(self, entry_id: str, *, by: str, fixed: str | Path | None = None) -> IngestResult:
        """Validate an entry's records again with the current schema and spec; what passes lands
        in the lake, what fails becomes a new entry. The entry is marked released in the same
        transaction as the landing, so a release can never land rows twice."""
        view = self.show(entry_id)
        if view.entry.status != "held":
            raise ConflictError(
                f"quarantine entry {entry_id} is {view.entry.status}, not held",
                details={"quarantine": entry_id, "status": view.entry.status},
            )
        data, fmt, positions = self._input(view)
        if fixed is not None:
            try:
                data = Path(fixed).read_bytes()
            except OSError as exc:
                raise ReadError(f"cannot read the fixed file {fixed}: {exc.strerror}") from None
            if positions is not None and _count(data, fmt) != len(positions.rows):
                positions = None  # records were added or removed: number them afresh
        digest = content_hash(f"release:{entry_id}:".encode() + data)

        def resolve(conn: Any, batch_id: str, residual: str | None) -> None:
            cat.resolve_quarantine(
                conn,
                entry_id,
                status="released",
                by=by,
                resolution={
                    "batch": batch_id,
                    "residual": residual,
                    "fixed": str(fixed) if fixed else None,
                },
            )

        job = IngestJob(
            source=view.entry.source,
            spec=self._source_spec(view.entry.source),
            fmt=fmt,
            file=view.batch.file,
            content_hash=digest,
            by=by,
            origin={"kind": "release", "quarantine": entry_id, "batch": view.batch.id},
            positions=positions,
            on_commit=resolve,
        )
        return ingest_buffer(self.store, self.lake, pa.py_buffer(data), job)

    def drop(self, entry_id: str, *, by: str, reason: str) -> cat.QuarantineRecord:
        """Discard an entry on purpose. The record of it (who, when, why, how many rows) stays,
        and so do its files."""
        if not reason.strip():
            raise ConflictError("dropping quarantined rows needs a reason (--reason)")
        with self.store.write() as conn:
            cat.resolve_quarantine(
                conn, entry_id, status="dropped", by=by, resolution={"reason": reason}
            )
            return cat.get_quarantine(conn, entry_id)

    def _input(self, view: QuarantineView) -> tuple[bytes, str, Positions | None]:
        """The entry's records as a file to ingest again, and where each came from."""
        entry, batch = view.entry, view.batch
        if entry.kind == "batch":
            data = self.lake.files.read_bytes(entry.path)
            if entry.path.endswith(".gz"):
                import gzip

                data = gzip.decompress(data)
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
