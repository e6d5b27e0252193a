"""`loopml quarantine list | show | export | release | drop`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import (
    EXIT_REJECTED,
    JsonOpt,
    ProjectOpt,
    open_project,
    out,
    print_json,
    table,
    when,
)

app = typer.Typer(
    help="Inspect, fix, release or drop quarantined rows and batches.", no_args_is_help=True
)
EntryArg = Annotated[str, typer.Argument(help="A quarantine entry id (q_...).")]


@app.command("list")
def list_(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    status: Annotated[str, typer.Option(help="held, released, dropped or all.")] = "held",
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Quarantine entries: one per batch that had rows quarantined, or per batch held whole."""
    if status not in ("held", "released", "dropped", "all"):
        raise typer.BadParameter("must be held, released, dropped or all", param_hint="--status")
    with open_project(project) as p:
        entries = p.data.quarantine.list(source=source, status=None if status == "all" else status)
        files = {e.batch_id: p.data.batches(status=None) for e in entries[:1]}
        batches = {b.id: b for b in next(iter(files.values()), [])}
    if json:
        print_json(entries)
        return 0
    if not entries:
        out.print(f"no {status if status != 'all' else ''} quarantine entries".replace("  ", " "))
        return 0
    rows = []
    for e in entries:
        top = [r for r in e.reasons if not r.get("also")][:3]
        reasons = "; ".join(
            f"{r['code']}{'(' + r['column'] + ')' if r.get('column') else ''} x{r['count']}"
            for r in top
        )
        b = batches.get(e.batch_id)
        rows.append(
            [
                e.id,
                e.source,
                e.kind,
                e.status,
                e.rows,
                Path(b.file).name if b else "",
                reasons,
                when(e.created_at),
            ]
        )
    table(None, ["entry", "source", "kind", "status", "rows", "file", "reasons", "created"], rows)
    return 0


@app.command("show")
def show(
    entry: EntryArg,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 20,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """An entry's reasons and its rows: where each came from, why, and its original text."""
    with open_project(project) as p:
        view = p.data.quarantine.show(entry)
    e = view.entry
    rows = view.rows.slice(0, limit).to_pylist() if view.rows is not None else []
    if json:
        print_json({"entry": e, "file": view.batch.file, "rows": rows, "rows_total": e.rows})
        return 0
    out.print(
        f"{e.id}: {e.rows:,} rows of {e.source} from {view.batch.file} ({e.kind}, {e.status})"
    )
    for r in e.reasons:
        label = "also" if r.get("also") else "reason"
        msg = r.get("message") or ""
        out.print(f"  {label}: {r['code']}{_col(r)} x{r['count']} {msg}")
    if e.resolution:
        out.print(f"  resolved by {e.resolved_by} at {when(e.resolved_at)}: {e.resolution}")
    if e.kind == "batch":
        out.print(f"  the original file is kept; release it with: loopml quarantine release {e.id}")
        return 0
    for r in rows:
        where = f"line {r['line']}" if r["line"] is not None else f"row {r['row']}"
        out.print(f"{where} (row {r['row']}): " + " | ".join(x["message"] for x in r["reasons"]))
        out.print(f"    {r['raw'][:200]}")
    if view.rows is not None and view.rows.num_rows > limit:
        out.print(f"... {view.rows.num_rows - limit:,} more (--limit, or export the entry)")
    return 0


@app.command("export")
def export(
    entry: EntryArg,
    file: Annotated[
        Path, typer.Argument(help="Where to write the records, in their original format.")
    ],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Write an entry's records to a file to fix by hand; then `release ID --fixed FILE`."""
    with open_project(project) as p:
        n = p.data.quarantine.export(entry, file)
    if json:
        print_json({"entry": entry, "file": str(file), "records": n})
    else:
        out.print(
            f"wrote {n:,} records to {file}; fix them, then: "
            f"loopml quarantine release {entry} --fixed {file}"
        )
    return 0


@app.command("release")
def release(
    entry: EntryArg,
    fixed: Annotated[
        Path | None, typer.Option(help="Corrected records (from `export`) to use instead.")
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Validate an entry again with the current schema and spec; land what passes.

    What still fails goes to a new entry. Exit code 3 when something is still quarantined.
    """
    with open_project(project) as p:
        result = p.data.quarantine.release(entry, by=_user(), fixed=fixed)
    if json:
        print_json(result)
    else:
        out.print(
            f"released {entry}: {result.rows_read:,} rows checked again, "
            f"{result.rows_accepted:,} landed "
            f"(batch {result.batch_id}), {result.rows_quarantined:,} still quarantined"
            + (f" in {result.quarantine_id}" if result.quarantine_id else "")
        )
        for b in result.batch_reasons:
            out.print(f"  still held: {b['message']}")
    return EXIT_REJECTED if result.rows_quarantined else 0


@app.command("drop")
def drop(
    entry: EntryArg,
    reason: Annotated[str, typer.Option(help="Why the rows are discarded (recorded).")],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Discard an entry on purpose; who, when and why are recorded, the files are kept."""
    with open_project(project) as p:
        rec = p.data.quarantine.drop(entry, by=_user(), reason=reason)
    if json:
        print_json(rec)
    else:
        out.print(f"dropped {entry} ({rec.rows:,} rows): {reason}")
    return 0


def _col(reason: dict[str, object]) -> str:
    return f" ({reason['column']})" if reason.get("column") else ""


def _user() -> str:
    from loopml.data import default_user

    return default_user()
