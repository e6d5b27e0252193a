"""`loopml ingest SOURCE [FILE...]`: read, check and land files; print the accounting."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loopml.cli._common import (
    EXIT_FAILURE,
    EXIT_REJECTED,
    JsonOpt,
    ProjectOpt,
    err,
    open_project,
    out,
    print_json,
    table,
)

if TYPE_CHECKING:
    from loopml.data import CheckNote, IngestResult


def ingest(
    source: Annotated[str, typer.Argument(help="The source to ingest into (created if new).")],
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files to ingest, one batch each (default: the source's path glob).",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Ingest CSV (also .gz), Parquet or JSON Lines files as batches of SOURCE.

    Every row ends in the lake or in quarantine, with a reason; the checks' bounds are printed.
    Once the online store has been materialized, each landed file brings it up to date. Exit
    code 3 when anything was quarantined, 1 when the online store could not be brought up to
    date.
    """
    with open_project(project) as p:
        paths = p.data.resolve_files(source, files)
        with Progress(
            TextColumn("ingesting {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=len(paths) < 2 or not err.is_terminal,
        ) as progress:
            task = progress.add_task(source, total=len(paths))
            results = p.data.ingest(source, paths, progress=lambda _r: progress.advance(task))
    summary = summarize(source, results)
    if json:
        print_json(summary)
    else:
        render(summary, results)
    if summary["online"] is not None and summary["online"]["status"] == "failed":
        return EXIT_FAILURE
    return EXIT_REJECTED if summary["rows_quarantined"] or summary["batches_held"] else 0


def summarize(source: str, results: list[IngestResult]) -> dict[str, Any]:
    reasons: dict[tuple[str, str | None], int] = {}
    for r in results:
        for reason in r.reasons:
            key = (reason["code"], reason["column"])
            reasons[key] = reasons.get(key, 0) + reason["count"]
    return {
        "source": source,
        "files": len(results),
        "rows_read": sum(r.rows_read for r in results),
        "rows_accepted": sum(r.rows_accepted for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "batches_held": sum(1 for r in results if r.status == "held"),
        # Files whose content was ingested before (skipped whole); duplicate rows are the
        # duplicate_key reason below.
        "files_already_ingested": sum(1 for r in results if r.status == "duplicate"),
        "reasons": [
            {"code": c, "column": col, "count": n}
            for (c, col), n in sorted(reasons.items(), key=lambda kv: -kv[1])
        ],
        "checks": [asdict(c) for c in _last_checks(results)],
        "online": online_summary(results),
        "batches": [r.to_dict() for r in results],
        # One file: its batch's numbers at the top level too.
        **(
            {"batch_id": results[0].batch_id, "status": results[0].status}
            if len(results) == 1
            else {}
        ),
    }


def _last_checks(results: list[IngestResult]) -> list[CheckNote]:
    """The checks of the last file that was checked (they follow the history, file by file)."""
    return next((r.checks for r in reversed(results) if r.checks), [])


def online_summary(results: list[IngestResult]) -> dict[str, Any] | None:
    """What the landed batches did to the online store, all told."""
    done = [r.online for r in results if r.online is not None]
    if not done:
        return None
    failed = [o for o in done if o.status == "failed"]
    if failed:
        return {"status": "failed", "message": failed[0].message}
    if all(o.status == "not_materialized" for o in done):
        return {"status": "not_materialized", "message": done[0].message}
    return {
        "status": "refreshed",
        "tiles": sum(o.tiles for o in done),
        "lookups": sum(o.lookups for o in done),
    }


def render_online(online: dict[str, Any] | None) -> None:
    if online is None:
        return
    if online["status"] == "refreshed":
        out.print(
            f"online store brought up to date: {online['tiles']:,} window tiles, "
            f"{online['lookups']:,} lookup values"
        )
    elif online["status"] == "not_materialized":
        out.print(f"note: {online['message']}", style="yellow")
    else:
        out.print(f"online store NOT up to date: {online['message']}", style="bold red")


def render_checks(notes: list[CheckNote]) -> None:
    if notes:
        out.print("checks: " + "; ".join(n.text for n in notes))


def render(summary: dict[str, Any], results: list[IngestResult]) -> None:
    table(
        f"ingest into {summary['source']}",
        ["file", "batch", "status", "read", "accepted", "quarantined"],
        [
            [
                Path(r.file).name,
                r.batch_id,
                r.status,
                r.rows_read,
                r.rows_accepted,
                r.rows_quarantined,
            ]
            for r in results
        ],
    )
    out.print(
        f"rows read {summary['rows_read']:,} = accepted {summary['rows_accepted']:,}"
        f" + quarantined {summary['rows_quarantined']:,}"
    )
    if summary["files_already_ingested"]:
        out.print(
            f"{summary['files_already_ingested']:,} file(s) ingested before (same content): "
            "skipped, no rows read"
        )
    render_checks(_last_checks(results))
    for r in results:
        for b in r.batch_reasons:
            out.print(f"held {Path(r.file).name}: {b['code']}: {b['message']}", style="bold red")
        for w in r.warnings:
            out.print(f"note {Path(r.file).name}: {w['message']}", style="yellow")
        if r.proposed_changes and r.status != "held":
            out.print(
                f"schema proposal from {Path(r.file).name}: {'; '.join(r.proposed_changes)}. "
                f"Review it with `loopml schema diff {r.source}`; "
                f"`loopml schema accept {r.source} --release` accepts it and lands the rows "
                "held for it",
                style="yellow",
            )
    if summary["reasons"]:
        table(
            "quarantine reasons",
            ["reason", "column", "rows"],
            [[x["code"], x["column"], x["count"]] for x in summary["reasons"]],
        )
        out.print("see them with: loopml quarantine list / loopml quarantine show ID")
    render_online(summary["online"])
