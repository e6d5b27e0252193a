"""`loopml data sources | list | query | snapshot | snapshots | recover | reset`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json, table, when
from loopml.errors import UsageError

if TYPE_CHECKING:
    from loopml.data import SourceReset

app = typer.Typer(
    help="The lake: sources, batches, snapshots, SQL over them, and reset.", no_args_is_help=True
)


@app.command("sources")
def sources(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Every source, declared or created by an ingest, with its counts."""
    with open_project(project) as p:
        rows = p.data.sources()
    if json:
        print_json(rows)
        return 0
    table(
        None,
        ["source", "declared", "format", "batches", "rows accepted", "rows quarantined", "schema"],
        [
            [
                r["source"],
                "yes" if r["declared"] else "no",
                r["format"],
                r["batches"],
                f"{r['rows_accepted']:,}",
                f"{r['rows_quarantined']:,}",
                r["schema_version"],
            ]
            for r in rows
        ],
    )
    return 0


@app.command("list")
def list_(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also pending and aborted batches.")] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Batches in the lake, oldest first, with their accounting."""
    with open_project(project) as p:
        batches = p.data.batches(source, status=None if all_ else "committed")
    if json:
        print_json(batches)
        return 0
    table(
        None,
        [
            "batch",
            "source",
            "status",
            "file",
            "read",
            "accepted",
            "quarantined",
            "schema",
            "committed",
        ],
        [
            [
                b.id,
                b.source,
                b.status,
                Path(b.file).name,
                b.rows_read,
                b.rows_accepted,
                b.rows_quarantined,
                b.schema_version,
                when(b.committed_at),
            ]
            for b in batches
        ],
    )
    return 0


@app.command("query")
def query(
    sql: Annotated[
        str,
        typer.Argument(
            help='SQL for DuckDB; each source is a view, e.g. "SELECT count(*) FROM orders".'
        ),
    ],
    snapshot: Annotated[
        str | None, typer.Option(help="Query this snapshot instead of the latest data.")
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the result (.parquet, .csv or .jsonl).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 50,
    unsafe: Annotated[
        bool,
        typer.Option(
            "--unsafe",
            help="Run any DuckDB SQL (read or write any file, COPY, ATTACH, INSTALL) with your "
            "rights over this machine.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Run SQL over the lake with DuckDB.

    Read-only by default: queries (SELECT, DESCRIBE, SUMMARIZE, EXPLAIN) over the sources' views,
    which read no other file, write nothing and install no extension; --unsafe lifts that.
    """
    with open_project(project) as p:
        result = p.data.query(sql, snapshot=snapshot, unsafe=unsafe)
    if out_file is not None:
        _write(result, out_file)
        if not json:
            out.print(f"wrote {result.num_rows:,} rows to {out_file}")
    if json:
        print_json(
            {
                "rows": result.slice(0, limit).to_pylist(),
                "num_rows": result.num_rows,
                "columns": result.column_names,
            }
        )
    elif out_file is None:
        shown = result.slice(0, limit).to_pylist()
        table(None, result.column_names, [[r[c] for c in result.column_names] for r in shown])
        if result.num_rows > limit:
            out.print(f"... {result.num_rows - limit:,} more rows (--limit N, or --out FILE)")
    return 0


def _write(result: object, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    assert isinstance(result, pa.Table)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pq.write_table(result, path)
    elif suffix == ".csv":
        pacsv.write_csv(result, path)
    elif suffix in (".jsonl", ".ndjson"):
        import orjson

        with open(path, "wb") as f:
            for row in result.to_pylist():
                f.write(orjson.dumps(row, default=str) + b"\n")
    else:
        raise UsageError(f"cannot write {path.name}: use .parquet, .csv or .jsonl")


@app.command("snapshot")
def snapshot(
    note: Annotated[str, typer.Option(help="Why this snapshot (recorded).")] = "",
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Record the current set of batches as a snapshot that training can name."""
    with open_project(project) as p:
        snap = p.data.snapshot(note=note)
    if json:
        print_json(snap)
    else:
        out.print(f"snapshot {snap.id}: {len(snap.batch_ids)} batches")
    return 0


@app.command("snapshots")
def snapshots(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Every snapshot."""
    with open_project(project) as p:
        snaps = p.data.snapshots()
    if json:
        print_json(snaps)
        return 0
    table(
        None,
        ["snapshot", "batches", "created", "by", "note"],
        [[s.id, len(s.batch_ids), when(s.created_at), s.created_by, s.note] for s in snaps],
    )
    return 0


@app.command("recover")
def recover(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Clean up after ingests that died: abort their batches and delete their files."""
    with open_project(project) as p:
        aborted = p.data.recover()
    if json:
        print_json({"aborted": aborted})
    else:
        out.print(
            f"aborted {len(aborted)} unfinished batches"
            + (": " + ", ".join(aborted) if aborted else "")
        )
    return 0


@app.command("reset")
def reset(
    source: Annotated[str, typer.Argument(help="The source whose data to forget.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Forget everything ingested into SOURCE, to ingest it again from scratch.

    Its batches leave the lake, its held quarantine entries are dropped, its schema is retired
    (the next file infers one anew, with loopml.yaml's declarations) and the online store's
    values computed from it are deleted. The records stay, marked reset; snapshots that
    included the batches can no longer be read. Asks first, showing what will go.
    """
    with open_project(project) as p:
        plan = p.data.reset_plan(source)
        if not json or not yes:
            _show_reset(plan, "will remove")
        if not yes and not typer.confirm(f"reset source {source}?", default=False, err=True):
            raise typer.Abort()
        done = p.data.reset(source)
        online = p.features.forget_source(source) if p.spec.features is not None else []
    if json:
        print_json({**done.to_dict(), "online_tables_cleared": online})
        return 0
    out.print(
        f"reset source {source}: {done.batches:,} batches ({done.rows_in_lake:,} rows) removed "
        f"from the lake, {done.quarantine_entries:,} quarantine entries dropped, "
        f"{done.schema_versions} schema versions retired"
        + (f", online values of {', '.join(online)} cleared" if online else "")
    )
    out.print(f"the next `loopml ingest {source} FILE` infers its schema anew")
    return 0


def _show_reset(plan: SourceReset, verb: str) -> None:
    def n(count: int, word: str) -> str:
        if count == 1:
            return f"1 {word}"
        plural = (
            word[:-1] + "ies"
            if word.endswith("y")
            else word + ("es" if word.endswith("ch") else "s")
        )
        return f"{count:,} {plural}"

    out.print(
        f"reset of source {plan.source} {verb}: {n(plan.batches, 'batch')} "
        f"({n(plan.rows_in_lake, 'row')} in the lake), "
        f"{n(plan.quarantine_entries, 'held quarantine entry')} ({n(plan.rows_held, 'row')}), "
        f"{n(plan.schema_versions, 'schema version')}"
    )
    if plan.snapshots:
        out.print(
            f"{n(len(plan.snapshots), 'snapshot')} include these batches and will no longer be "
            f"readable: {', '.join(plan.snapshots[:5])}"
            + (" ..." if len(plan.snapshots) > 5 else "")
        )
