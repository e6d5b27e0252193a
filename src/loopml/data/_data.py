"""The data side of a project: sources, ingestion, schemas, quarantine, the lake."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from loopml.data import _catalog as cat
from loopml.data._inflate import InflateLimit, inflate
from loopml.data._ingest import content_hash, ingest_buffer
from loopml.data._job import IngestJob, IngestResult, OnlineRefresh
from loopml.data._lake import Lake
from loopml.data._quarantine import Quarantine, default_user
from loopml.data._readers import open_buffer
from loopml.data._schema import Schema, apply_declarations, declared_schema, schema_diff
from loopml.errors import ConflictError, NotFoundError, ReadError, SchemaError, UsageError
from loopml.spec import ProjectSpec, SourceSpec, check_source_name
from loopml.storage import FileStore, SqlMetadataStore

_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def format_of(path: str) -> str | None:
    """The format a file name implies (``.gz`` looked through), or None."""
    name = path.lower().removesuffix(".gz")
    return _FORMATS.get(os.path.splitext(name)[1])


_KINDS = (
    (stat.S_ISDIR, "is a directory, not a file; give the files in it (e.g. DIR/*.csv)"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file; save its data to a file first"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def check_regular_file(path: str) -> None:
    """A path that can be ingested: a regular file (symbolic links followed); anything else
    is named for what it is. (Reading a FIFO would block, a device may never end.)"""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ReadError(f"no such file: {path}", details={"file": path}) from None
    except OSError as exc:  # a symbolic link loop, a path through a file, no permission
        raise ReadError(f"cannot read {path}: {exc.strerror}", details={"file": path}) from None
    for is_kind, says in _KINDS:
        if is_kind(mode):
            raise ReadError(f"{path} {says}", details={"file": path})
    if not stat.S_ISREG(mode):  # pragma: no cover - every kind of file is listed above
        raise ReadError(f"{path} is not a regular file", details={"file": path})


@dataclass(frozen=True)
class SourceReset:
    """What ``loopml data reset SOURCE`` removes (or removed): the counts a user confirms."""

    source: str
    batches: int  # committed batches, their files deleted
    rows_in_lake: int
    quarantine_entries: int  # held entries, dropped with their files
    rows_held: int
    schema_versions: int  # active and proposed versions, retired
    snapshots: list[str]  # snapshots that include the batches: they no longer hold these rows

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SchemaDiff:
    source: str
    active_version: int | None
    proposed_version: int | None
    changes: list[str]
    columns: list[dict[str, Any]]


class Data:
    """Sources, ingestion, schemas, quarantine and the lake of one project."""

    def __init__(
        self,
        spec: ProjectSpec,
        root: Path,
        store: SqlMetadataStore,
        lake_files: FileStore,
        *,
        after_landing: Callable[[IngestResult], OnlineRefresh | None] | None = None,
    ) -> None:
        """``after_landing`` is called with every file ingest or release that committed a batch
        (the project keeps the online store current with it); what it returns is the result's
        ``online``."""
        self.spec = spec
        self.root = root
        self.store = store
        self.lake = Lake(lake_files, store, lambda source: self.source_spec(source).schema_)
        self._after_landing = after_landing
        self.quarantine = Quarantine(store, self.lake, self.source_spec, after_landing=self._landed)

    def _landed(self, result: IngestResult) -> IngestResult:
        if self._after_landing is not None and result.rows_accepted:
            result.online = self._after_landing(result)
        return result

    # ------------------------------------------------------------------------------- sources

    def source_spec(self, name: str) -> SourceSpec:
        """A declared source's spec, or the one recorded when an undeclared source was created."""
        if name in self.spec.sources:
            return self.spec.sources[name]
        with self.store.read() as conn:
            rec = cat.get_source(conn, name)
        if rec is None:
            declared = ", ".join(sorted(self.spec.sources)) or "none"
            raise NotFoundError(
                f"no source {name!r} (declared: {declared}); "
                f"`loopml ingest {name} FILE` creates it",
                details={"source": name},
            )
        return SourceSpec.model_validate(rec.config)

    def sources(self) -> list[dict[str, Any]]:
        """Every source, declared or created by an ingest, with its batch and row counts."""
        with self.store.read() as conn:
            registered = {s.name: s for s in cat.list_sources(conn)}
            batches = cat.list_batches(conn)
            active = {n: cat.active_schema(conn, n) for n in registered}
        names = sorted(set(self.spec.sources) | set(registered))
        out = []
        for n in names:
            mine = [b for b in batches if b.source == n]
            schema = active.get(n)
            out.append(
                {
                    "source": n,
                    "declared": n in self.spec.sources,
                    "format": (self.spec.sources[n].format if n in self.spec.sources else None)
                    or (registered[n].format if n in registered else None),
                    "batches": len(mine),
                    "rows_accepted": sum(b.rows_accepted or 0 for b in mine),
                    "rows_quarantined": sum(b.rows_quarantined or 0 for b in mine),
                    "schema_version": schema.version if schema else None,
                }
            )
        return out

    def register(self, name: str, *, fmt: str) -> SourceSpec:
        """Make sure a source is registered in the metadata store (as ingestion does), and
        return its spec; a source neither declared nor registered is created with ``fmt``."""
        declared = name in self.spec.sources
        try:
            spec = self.source_spec(name)
        except NotFoundError:
            spec = SourceSpec(format=fmt)
        self._register(name, spec.format or fmt, spec, declared=declared)
        return spec

    def _register(self, name: str, fmt: str, spec: SourceSpec, *, declared: bool) -> None:
        with self.store.write() as conn:
            cat.ensure_source(
                conn,
                name,
                format=fmt,
                declared=declared,
                config=spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            )

    # ------------------------------------------------------------------------------ ingestion

    def resolve_files(self, source: str, files: Iterable[str | Path] | None) -> list[str]:
        """The files to ingest: those given, or the source's ``path`` glob."""
        given = [str(f) for f in files or []]
        if not given:
            spec = self.spec.sources.get(source)
            if spec is None or not spec.path:
                raise UsageError(
                    f"no files given, and source {source!r} declares no path in loopml.yaml"
                )
            pattern = spec.path if os.path.isabs(spec.path) else str(self.root / spec.path)
            given = sorted(glob.glob(pattern))
            if not given:
                raise ReadError(f"source {source!r}: no files match {spec.path!r}")
        for f in given:
            check_regular_file(f)
        return given

    def ingest(
        self,
        source: str,
        files: Iterable[str | Path] | None = None,
        *,
        by: str | None = None,
        progress: Callable[[IngestResult], None] | None = None,
    ) -> list[IngestResult]:
        """Ingest files into a source, one batch per file, in the order given.

        A source that is neither declared nor registered is created, its format taken from the
        first file's extension and everything else inferred from the data.
        """
        try:
            check_source_name(source)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        paths = self.resolve_files(source, files)
        by = by or default_user()
        declared = source in self.spec.sources
        try:
            spec = self.source_spec(source)
            known = True
        except NotFoundError:
            spec, known = SourceSpec(), False
        results = []
        for path in paths:
            fmt = spec.format or format_of(path)
            if fmt is None:
                raise UsageError(
                    f"cannot tell the format of {path}: name it .csv, .parquet or .jsonl "
                    f"(optionally .gz), or set sources.{source}.format in loopml.yaml"
                )
            created = not known
            if not known or declared:
                if not known and path.lower().removesuffix(".gz").endswith(".tsv"):
                    spec = spec.model_copy(
                        update={"csv": spec.csv.model_copy(update={"delimiter": "\t"})}
                    )
                spec = spec.model_copy(update={"format": fmt})
                self._register(source, fmt, spec, declared=declared)
                known = True
            try:
                result = self.ingest_file(
                    source,
                    spec,
                    path,
                    fmt=fmt,
                    by=by,
                    infer_timestamp=not declared,
                    new_source=created and not declared,
                )
            except BaseException:
                if created:  # the source this call made, refused with its first file
                    # Best effort: the error to report is the one that refused the file.
                    with contextlib.suppress(Exception), self.store.write() as conn:
                        cat.forget_new_source(conn, source)
                raise
            results.append(result)
            if progress is not None:
                progress(results[-1])
        return results

    def ingest_file(
        self,
        source: str,
        spec: SourceSpec,
        path: str,
        *,
        fmt: str,
        by: str,
        infer_timestamp: bool = False,
        new_source: bool = False,
    ) -> IngestResult:
        try:
            raw = open_buffer(path)
        except OSError as exc:
            raise ReadError(f"cannot read {path}: {exc.strerror}", details={"file": path}) from None
        digest = content_hash(raw)
        buf, refused = raw, None
        if path.lower().endswith(".gz"):
            try:
                buf = inflate(raw, spec.gzip)
            except InflateLimit as exc:
                buf, refused = pa.py_buffer(b""), str(exc)
            except OSError as exc:
                raise ReadError(f"{path}: {exc}", details={"file": path}) from None
        job = IngestJob(
            source=source,
            spec=spec,
            fmt=fmt,
            file=path,
            content_hash=digest,
            by=by,
            original=raw.to_pybytes,
            infer_timestamp=infer_timestamp,
            new_source=new_source,
            refused=refused,
        )
        return self._landed(ingest_buffer(self.store, self.lake, buf, job))

    def recover(self) -> list[str]:
        """Abort the pending batches of dead processes in every source; returns their ids."""
        with self.store.read() as conn:
            names = [s.name for s in cat.list_sources(conn)]
        return [b for n in names for b in self.lake.recover(n)]

    # -------------------------------------------------------------------------------- schemas

    def schema(self, source: str, version: int | None = None) -> cat.SchemaVersion:
        """The active schema of a source (with the spec's declarations laid over it)."""
        self.source_spec(source)
        with self.store.read() as conn:
            versions = cat.schema_versions(conn, source)
        if version is not None:
            for v in versions:
                if v.version == version:
                    return v
            raise NotFoundError(f"source {source!r} has no schema version {version}")
        for v in versions:
            if v.status == "active":
                policy = self.source_spec(source).schema_
                return cat.SchemaVersion(
                    **{**v.__dict__, "schema": apply_declarations(v.schema, policy)}
                )
        raise NotFoundError(
            f"source {source!r} has no schema yet: its first ingested batch infers one",
            details={"source": source},
        )

    def schemas(self) -> dict[str, Schema]:
        """Every source's schema as features see it: the active one with loopml.yaml's
        declarations laid over it, or, for a source no data has reached yet, the columns whose
        types loopml.yaml declares (sources with neither are left out)."""
        with self.store.read() as conn:
            registered = [s.name for s in cat.list_sources(conn)]
            active = {n: cat.active_schema(conn, n) for n in registered}
        out: dict[str, Schema] = {}
        for name in sorted(set(registered) | set(self.spec.sources)):
            spec = self.source_spec(name)
            version = active.get(name)
            if version is not None:
                out[name] = apply_declarations(version.schema, spec.schema_)
            else:
                declared = declared_schema(spec)
                if declared is not None:
                    out[name] = declared
        return out

    def schema_versions(self, source: str) -> list[cat.SchemaVersion]:
        self.source_spec(source)
        with self.store.read() as conn:
            return cat.schema_versions(conn, source)

    def schema_diff(self, source: str) -> SchemaDiff:
        """What the pending proposal would change in the active schema."""
        self.source_spec(source)
        with self.store.read() as conn:
            active = cat.active_schema(conn, source)
            proposed = cat.proposed_schema(conn, source)
        if proposed is None or active is None:
            return SchemaDiff(source, active.version if active else None, None, [], [])
        return SchemaDiff(
            source,
            active.version,
            proposed.version,
            [c.describe() for c in proposed.changes],
            schema_diff(active.schema, proposed.schema),
        )

    def accept_schema(
        self, source: str, *, by: str | None = None, release: bool = False
    ) -> tuple[int, list[IngestResult]]:
        """Activate the pending proposal; with ``release``, check every held quarantine entry of
        the source again, landing what now passes."""
        by = by or default_user()
        self.source_spec(source)
        with self.store.write() as conn:
            proposed = cat.proposed_schema(conn, source)
            if proposed is None:
                raise SchemaError(
                    f"source {source!r} has no pending schema change to accept",
                    details={"source": source},
                )
            cat.activate(
                conn,
                source,
                proposed.version,
                by=by,
                note="accepted: " + "; ".join(c.describe() for c in proposed.changes),
            )
        released: list[IngestResult] = []
        if release:
            # Everything the source holds is checked again under the new schema: what now
            # passes lands, what does not stays quarantined (as a new entry).
            for entry in self.quarantine.list(source=source):
                released.append(self.quarantine.release(entry.id, by=by))
        return proposed.version, released

    # ---------------------------------------------------------------------------------- reset

    def reset_plan(self, source: str) -> SourceReset:
        """What :meth:`reset` would remove from ``source``, counted."""
        self.source_spec(source)
        with self.store.read() as conn:
            batches = cat.list_batches(conn, source=source, status="committed")
            held = cat.list_quarantine(conn, source=source, status="held")
            versions = [
                v for v in cat.schema_versions(conn, source) if v.status in ("active", "proposed")
            ]
            snapshots = cat.snapshots_holding(conn, [b.id for b in batches])
        return SourceReset(
            source=source,
            batches=len(batches),
            rows_in_lake=sum(b.rows_accepted or 0 for b in batches if b.lake_path),
            quarantine_entries=len(held),
            rows_held=sum(e.rows for e in held),
            schema_versions=len(versions),
            snapshots=snapshots,
        )

    def reset(self, source: str, *, by: str | None = None) -> SourceReset:
        """Forget everything ingested into ``source``: its batches leave the lake, its held
        quarantine entries are dropped, its schema is retired (the next file infers one anew,
        with the declarations of loopml.yaml). The records stay, marked ``reset``; snapshots
        that included the batches refuse to be read. Returns what was removed."""
        by = by or default_user()
        plan = self.reset_plan(source)
        self.lake.recover(source)
        with self.store.write() as conn:
            pending = cat.list_batches(conn, source=source, status="pending")
            if pending:
                raise ConflictError(
                    f"source {source!r} is being ingested right now (batch {pending[0].id} by "
                    f"{pending[0].owner}); reset it when that is done",
                    details={"source": source, "batch": pending[0].id},
                )
            batches = cat.list_batches(conn, source=source, status="committed")
            cat.reset_source(conn, source, by=by)
        # Files go after the commit: a crash in between leaves files no batch owns, which
        # `recover` deletes.
        for b in batches:
            self.lake.remove_batch_files(source, b.id)
        self.lake.recover(source)
        return plan

    # ------------------------------------------------------------------------------ the lake

    def batches(
        self, source: str | None = None, status: str | None = "committed"
    ) -> list[cat.BatchRecord]:
        with self.store.read() as conn:
            return cat.list_batches(conn, source=source, status=status)

    def snapshot(self, *, note: str = "", by: str | None = None) -> cat.SnapshotRecord:
        return self.lake.snapshot(by=by or default_user(), note=note)

    def snapshots(self) -> list[cat.SnapshotRecord]:
        with self.store.read() as conn:
            return cat.list_snapshots(conn)

    def query(self, sql: str, *, snapshot: str | None = None, unsafe: bool = False) -> pa.Table:
        """SQL over the lake, each source a view (read-only; see :meth:`Lake.query`)."""
        return self.lake.query(sql, snapshot, unsafe=unsafe)

    def read_table(self, source: str, *, snapshot: str | None = None) -> pa.Table:
        """Every row of a source in the lake (or in a snapshot), as Arrow."""
        self.source_spec(source)
        return self.lake.query(f'SELECT * FROM "{source}"', snapshot)
