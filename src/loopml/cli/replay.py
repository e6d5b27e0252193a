"""`loopml replay FILE --at COLUMN`: history answered as traffic, logged at its own times."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli._common import EXIT_FAILURE, JsonOpt, ProjectOpt, open_project, out, print_json


def replay(
    file: Annotated[
        Path,
        typer.Argument(
            help="The events: .csv (.csv.gz), .parquet or .jsonl, with every model input or "
            "the request features.",
            show_default=False,
        ),
    ],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="The column holding each row's time: its prediction is logged at that time "
            "(default: the event's time column).",
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        bool,
        typer.Option(
            "--labels",
            help="Also send each row's label (computed by features.label from the file's "
            "columns) as feedback, known when the label definition says.",
        ),
    ] = False,
    snapshot: Annotated[
        str | None,
        typer.Option(help="Compute request rows' features from this snapshot (default: now)."),
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Answer every row of FILE as traffic (under the champion's rollout, like served
    requests) and log each prediction at the row's own time instead of the clock's, so that
    `loopml monitor` windows history by event time.

    Row i of FILE is answered as prediction ID_PREFIX-i (printed); labels join it by that id, or by the event's keys with `event_time` (`loopml feedback`). Replaying the same file again logs nothing twice."""
    from loopml.controller import replay_file

    with open_project(project) as p:
        done = replay_file(p, file, at=at, labels=labels, snapshot=snapshot).to_dict()
    if json:
        print_json(done)
    else:
        render(done)
    matching = (done.get("labels") or {}).get("matching") or {}
    if labels and matching.get("sent") and not matching.get("matched"):
        return EXIT_FAILURE
    return 0


def render(done: dict[str, Any]) -> None:
    answered = ", ".join(f"version {v}: {n:,}" for v, n in done["answered"].items())
    how = (
        "every model input given"
        if done["inputs"] == "features"
        else f"features computed from snapshot {done['snapshot']}"
    )
    out.print(
        f"replayed {done['rows']:,} rows of {done['file']} as traffic ({answered}"
        + (f"; {done['shadowed']:,} shadowed" if done["shadowed"] else "")
        + f"; {how})"
    )
    if done["rows"]:
        out.print(
            f"logged at their {done['at']}, from {done['start'][:19]} to {done['end'][:19]}; "
            f"prediction ids {done['ids']} (row i is {done['id_prefix']}-i)"
        )
    sent = done.get("labels")
    if sent is not None:
        m = sent.get("matching") or {}
        out.print(
            f"labels: {sent['accepted']:,} sent, {len(sent['rejected']):,} refused, "
            f"{sent.get('unlabelled', 0):,} rows without a label; "
            f"{m.get('matched', 0):,} matched their prediction"
        )
    out.print("next: loopml monitor (windows by these times), loopml feedback LABELS")
