"""`loopml quarantine list | show | export | release | drop`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loopml.cli._common import (
    EXIT_FAILURE,
    EXIT_REJECTED,
    EXIT_USAGE,
    JsonOpt,
    ProjectOpt,
    err,
    open_project,
    out,
    print_json,
    table,
    when,
)
from loopml.errors import UsageError

if TYPE_CHECKING:
    from loopml._project import Project
    from loopml.data import QuarantineRecord

app = typer.Typer(
    help="Inspect, fix, release or drop quarantined rows and batches.", no_args_is_help=True
)
EntryArg = Annotated[
    str,
    typer.Argument(help="A quarantine entry id (q_...), or `latest`: the newest held entry."),
]


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
        b = batches.get(e.batch_id)
        rows.append(
            [
                e.id,
                e.source,
                e.kind,
                e.status,
                e.rows,
                Path(b.file).name if b else "",
                _reasons(e),
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
        view = p.data.quarantine.show(_resolve(p, entry))
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
        if e.status == "held":
            # A batch check would hold the same file again: say how to overrule it.
            flags = " ".join(
                dict.fromkeys(
                    f"--accept-{r['code'].replace('_', '-')}"
                    for r in e.reasons
                    if not r.get("also") and r["code"] in ("row_count", "null_rate")
                )
            )
            out.print(
                "  the original file is kept; release it with: "
                f"loopml quarantine release {e.id}{' ' + flags if flags else ''}"
            )
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
        entry = _resolve(p, entry)
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
    accept_row_count: Annotated[
        bool,
        typer.Option(
            "--accept-row-count",
            help="The file was held for its row count, and that count is right: land it as it "
            "is (recorded).",
        ),
    ] = False,
    accept_null_rate: Annotated[
        bool,
        typer.Option(
            "--accept-null-rate",
            help="The file was held for a column's null rate, and that rate is the new normal: "
            "land it, and compare later files with it (recorded).",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Validate an entry again with the current schema and spec; land what passes.

    What still fails goes to a new entry; when nothing lands, the entry stays held as it is.
    Exit code 3 when something is still quarantined.
    """
    from loopml.cli.ingest import online_summary, render_checks, render_online

    accept = [
        name
        for name, on in (("row_count", accept_row_count), ("null_rate", accept_null_rate))
        if on
    ]
    with open_project(project) as p:
        entry = _resolve(p, entry)
        result = p.data.quarantine.release(entry, by=_user(), fixed=fixed, accept=accept)
    online = online_summary([result])
    if json:
        print_json(result)
    elif result.rows_accepted == 0:
        out.print(
            f"{entry} stays held: {result.rows_read:,} rows checked again, none landed",
            style="bold red",
        )
        for b in result.batch_reasons:
            out.print(f"  held: {b['code']}: {b['message']}")
        for r in result.reasons if not result.batch_reasons else []:
            out.print(f"  {r['code']}{_col(r)}: {r['count']:,} rows")
        if result.batch_reasons:
            render_checks(result.checks)
    else:
        out.print(
            f"released {entry}: {result.rows_read:,} rows checked again, "
            f"{result.rows_accepted:,} landed "
            f"(batch {result.batch_id}), {result.rows_quarantined:,} still quarantined"
            + (f" in {result.quarantine_id}" if result.quarantine_id else "")
        )
        if result.accepted.get("row_count"):
            out.print("  accepted its row count (recorded in the entry)")
        for column in result.accepted.get("null_rate", []):
            out.print(
                f"  accepted the null rate of column '{column}': later files are compared "
                "with it (recorded in the entry)"
            )
        render_online(online)
    if online is not None and online["status"] == "failed":
        return EXIT_FAILURE
    return EXIT_REJECTED if result.rows_quarantined else 0


@app.command("drop")
def drop(
    entries: Annotated[
        list[str] | None,
        typer.Argument(help="Quarantine entry ids (q_...) to drop.", show_default=False),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why the rows are discarded (recorded).")] = "",
    all_held: Annotated[
        bool,
        typer.Option("--all-held", help="Drop every held entry (narrowed by --source and --code)."),
    ] = False,
    source: Annotated[str | None, typer.Option(help="With --all-held: only this source.")] = None,
    code: Annotated[
        str | None,
        typer.Option(help="With --all-held: only entries held for this reason (e.g. row_count)."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask: drop what --all-held selects.")
    ] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Discard entries on purpose, in one decision; who, when and why are recorded, the files
    are kept.

    Name the entries, or select them with --all-held (and --source, --code): a selection is
    listed and needs a confirmation (or --yes).
    """
    if not reason.strip():
        raise typer.BadParameter("say why the rows are discarded", param_hint="--reason")
    if bool(entries) == all_held:
        raise typer.BadParameter(
            "name the entries to drop, or select them with --all-held (not both)",
            param_hint="ENTRIES / --all-held",
        )
    if (source or code) and not all_held:
        raise typer.BadParameter("--source and --code narrow --all-held", param_hint="--all-held")
    with open_project(project) as p:
        q = p.data.quarantine
        if all_held:
            chosen = q.select(source=source, code=code)
            selection = " ".join(
                ["--all-held"]
                + ([f"--source {source}"] if source else [])
                + ([f"--code {code}"] if code else [])
            )
        else:
            chosen = [q.show(e).entry for e in dict.fromkeys(entries or [])]
            selection = None
        total = sum(e.rows for e in chosen)
        if not chosen:
            if json:
                print_json({"dropped": [], "entries": 0, "rows": 0})
            else:
                out.print(f"no held entries match {selection}")
            return 0
        if not json:
            _list_entries(chosen)
        if all_held and not yes and not _confirmed(len(chosen), total):
            return EXIT_USAGE
        dropped = q.drop_many(
            [e.id for e in chosen], by=_user(), reason=reason, selection=selection
        )
    if json:
        print_json({"dropped": dropped, "entries": len(dropped), "rows": total})
    else:
        out.print(
            f"dropped {len(dropped)} entr{'y' if len(dropped) == 1 else 'ies'} ({total:,} rows): {reason}"
        )
    return 0


def _resolve(p: Project, entry: str) -> str:
    """An entry id, with `latest` read as the newest held entry (what was just quarantined)."""
    if entry != "latest":
        return entry
    held = p.data.quarantine.list(status="held")
    if not held:
        raise UsageError("no quarantine entry is held: `latest` names none")
    return max(held, key=lambda e: e.created_at).id


def _confirmed(entries: int, rows: int) -> bool:
    """Whether the user confirms dropping a selection (never, without a terminal to ask on)."""
    if err.is_terminal and typer.confirm(
        f"drop these {entries} entries ({rows:,} rows)?", err=True
    ):
        return True
    err.print(f"nothing dropped: confirm, or pass --yes to drop {entries} entries ({rows:,} rows)")
    return False


def _list_entries(entries: list[QuarantineRecord]) -> None:
    table(
        None,
        ["entry", "source", "kind", "status", "rows", "reasons"],
        [[e.id, e.source, e.kind, e.status, e.rows, _reasons(e)] for e in entries],
    )


def _reasons(e: QuarantineRecord) -> str:
    top = [r for r in e.reasons if not r.get("also")][:3]
    return "; ".join(
        f"{r['code']}{'(' + r['column'] + ')' if r.get('column') else ''} x{r['count']}"
        for r in top
    )


def _col(reason: dict[str, object]) -> str:
    return f" ({reason['column']})" if reason.get("column") else ""


def _user() -> str:
    from loopml.data import default_user

    return default_user()
