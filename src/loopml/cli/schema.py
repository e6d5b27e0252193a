"""`loopml schema show | versions | diff | accept`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json, table, when

app = typer.Typer(help="Show a source's schema and accept proposed changes.", no_args_is_help=True)
SourceArg = Annotated[str, typer.Argument(help="The source.")]


@app.command("show")
def show(
    source: SourceArg,
    version: Annotated[int | None, typer.Option(help="A past version (default: active).")] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """The active schema (with loopml.yaml's declarations applied), or a given version."""
    with open_project(project) as p:
        v = p.data.schema(source, version)
    if json:
        print_json({"source": source, "version": v.version, "status": v.status, "schema": v.schema})
        return 0
    out.print(
        f"{source}: schema version {v.version} ({v.status}), {when(v.created_at)} by {v.created_by}"
    )
    if v.note:
        out.print(f"  {v.note}")
    s = v.schema
    out.print(f"event time: {s.timestamp or '-'}   primary key: {', '.join(s.primary_key) or '-'}")
    rows = []
    for c in s.columns:
        domain = ""
        if c.role == "id":
            domain = "identifier: no categories, no range"
        elif c.type == "null":
            domain = "no value yet: typed by its first values"
        elif c.categories is not None:
            shown = ", ".join(c.categories[:8]) + (" ..." if len(c.categories) > 8 else "")
            domain = f"{len(c.categories)} categories ({shown}); unseen: {c.unseen}"
        elif c.min is not None or c.max is not None:
            domain = f"[{_n(c.min)}, {_n(c.max)}]"
        observed = ""
        if "min" in c.observed:
            observed = f"{c.observed['min']} .. {c.observed['max']}"
        elif "distinct" in c.observed:
            observed = f"{c.observed['distinct']:,} distinct"
        if "categories" in c.observed and c.categories is None:
            observed += f"; categories {c.observed['categories']}"
        rows.append([c.name, c.type_name(), "yes" if c.nullable else "no", domain, observed])
    table(None, ["column", "type", "nullable", "allowed", "first batch"], rows)
    return 0


def _n(x: float | None) -> str:
    if x is None:
        return "-"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@app.command("versions")
def versions(source: SourceArg, project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Every schema version of a source, with who made it and why."""
    with open_project(project) as p:
        vs = p.data.schema_versions(source)
    if json:
        print_json([{k: v for k, v in x.__dict__.items() if k != "schema"} for x in vs])
        return 0
    table(
        None,
        ["version", "status", "when", "by", "note"],
        [[v.version, v.status, when(v.created_at), v.created_by, v.note] for v in vs],
    )
    return 0


@app.command("diff")
def diff(source: SourceArg, project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """What the pending proposal (from held batches or warnings) would change."""
    with open_project(project) as p:
        d = p.data.schema_diff(source)
    if json:
        print_json(d)
        return 0
    if d.proposed_version is None:
        out.print(f"{source}: no pending schema change (active version {d.active_version})")
        return 0
    out.print(f"{source}: version {d.active_version} (active) -> {d.proposed_version} (proposed)")
    for c in d.changes:
        out.print(f"  - {c}")
    table(
        None,
        ["column", "change", "old", "new"],
        [[r["column"], r["change"], r["old"], r["new"]] for r in d.columns],
    )
    out.print(f"accept with: loopml schema accept {source} --release")
    return 0


@app.command("accept")
def accept(
    source: SourceArg,
    release: Annotated[bool, typer.Option(help="Re-ingest the batches the change held.")] = False,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Make the proposed schema the active one; with --release, land the batches it held."""
    with open_project(project) as p:
        version, released = p.data.accept_schema(source, release=release)
    summary = {
        "source": source,
        "version": version,
        "released": [r.to_dict() for r in released],
        "rows_accepted": sum(r.rows_accepted for r in released),
        "rows_quarantined": sum(r.rows_quarantined for r in released),
    }
    if json:
        print_json(summary)
    else:
        out.print(f"{source}: schema version {version} is now active")
        for r in released:
            if r.rows_accepted == 0:
                why = "; ".join(
                    f"{b['code']}: {b['message']}" for b in r.batch_reasons
                ) or ", ".join(f"{x['code']} x{x['count']}" for x in r.reasons)
                out.print(f"  {r.quarantine_id} stays held, nothing landed: {why}")
                continue
            out.print(
                f"  released into batch {r.batch_id}: {r.rows_accepted:,} rows landed, "
                f"{r.rows_quarantined:,} still quarantined"
                + (f" (in {r.quarantine_id})" if r.quarantine_id else "")
            )
    return 0
