"""`loopml events publish | consume`: the event transport."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import EXIT_REJECTED, JsonOpt, ProjectOpt, open_project, out, print_json

app = typer.Typer(
    help="Send events to a source's stream and consume them into the lake.", no_args_is_help=True
)


@app.command("publish")
def publish(
    source: Annotated[str, typer.Argument(help="The source whose stream receives the rows.")],
    file: Annotated[Path, typer.Argument(help="Rows to send: CSV, Parquet or JSON Lines.")],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Append every row of FILE to SOURCE's stream, as events."""
    from loopml.features import read_rows

    with open_project(project) as p:
        n = p.features.publish(source, read_rows(file))
    if json:
        print_json({"source": source, "events": n})
    else:
        out.print(f"published {n:,} events to {source}")
    return 0


@app.command("consume")
def consume(
    source: Annotated[str, typer.Argument(help="The source whose stream to consume.")],
    follow: Annotated[
        bool, typer.Option(help="Keep consuming as events arrive (Ctrl-C stops).")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Events per micro-batch.")] = 5000,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Land the stream into the lake (validated, quarantined as files are) and update the
    online store's windows and lookups. Without --follow, stops when the stream is drained."""
    with open_project(project) as p:
        consumer = p.features.consumer(source, batch_size=batch_size)
        results = consumer.run(max_idle_steps=None if follow else 1, block_ms=1000 if follow else 0)
    notes = [n for r in results for n in r.notes]
    summary = {
        "source": source,
        "micro_batches": len(results),
        "events": sum(r.events for r in results),
        "skipped": sum(r.skipped for r in results),
        "rows_accepted": sum(r.landed.rows_accepted for r in results if r.landed),
        "rows_quarantined": sum(r.landed.rows_quarantined for r in results if r.landed),
        "tiles": sum(r.tiles for r in results),
        "lookups": sum(r.lookups for r in results),
        "micro_batches_held": sum(
            1 for r in results if r.landed is not None and r.landed.status == "held"
        ),
        "notes": notes,
    }
    if json:
        print_json(summary)
    else:
        out.print(
            f"{source}: {summary['events']:,} events in {summary['micro_batches']} micro-batches; "
            f"{summary['rows_accepted']:,} landed, {summary['rows_quarantined']:,} quarantined, "
            f"{summary['skipped']:,} already landed; online store: {summary['tiles']:,} tiles "
            f"updated, {summary['lookups']:,} lookup values written"
        )
        for note in notes:
            out.print(note, style="bold red")
    return EXIT_REJECTED if summary["rows_quarantined"] else 0
