"""`loopml predict --input FILE --output FILE`: batch prediction, Parquet (or CSV) in, Parquet
out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from loopml.cli._common import JsonOpt, ProjectOpt, err, open_project, out, print_json


def predict(
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="The rows: .parquet or .csv (.csv.gz), with every model input or the request "
            "features.",
            show_default=False,
        ),
    ],
    output_file: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Where to write the predictions (.parquet).", show_default=False
        ),
    ],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="A version number or an alias (champion, ...)."),
    ] = "champion",
    engine: Annotated[
        str, typer.Option(help="local (Arrow, in this process) or ray (Ray Data).")
    ] = "local",
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="Rows predicted at a time.")
    ] = 65536,
    snapshot: Annotated[
        str | None,
        typer.Option(help="Compute request rows' features from this snapshot (default: now)."),
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Predict every row of a file with a registered version; write the predictions as Parquet.

    Rows holding every model input (a training set from `loopml features build`) are predicted as they are; rows holding only the request features get their features computed point-in-time first.

    The output keeps the identifying columns, then prediction (and decision; for multiclass one p_CLASS per class and decision) and model_version.

    The ray engine uses the cluster at LOOPML_RAY_ADDRESS, or starts a local Ray and stops it after.
    """
    from loopml.serving import predict_file

    with (
        open_project(project) as p,
        Progress(
            TextColumn("predicting"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=json or not err.is_terminal,
        ) as bar,
    ):
        task = bar.add_task("predict", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        summary = predict_file(
            p,
            input_file,
            output_file,
            ref=_ref(model),
            engine=engine,
            chunk_rows=chunk_rows,
            snapshot=snapshot,
            progress=progress,
        )
    if json:
        print_json(summary)
    else:
        render(summary)
    return 0


def _ref(text: str) -> str | int:
    ref = text.split(":", 1)[-1]  # MODEL:VERSION is accepted too
    return int(ref) if ref.isdigit() else ref


def render(summary: dict[str, Any]) -> None:
    how = (
        "every model input given"
        if summary["inputs"] == "features"
        else f"features computed from snapshot {summary['snapshot']}"
    )
    out.print(
        f"predicted {summary['rows']:,} rows with {summary['model']} version {summary['version']} "
        f"({summary['engine']} engine, {how}) in {summary['seconds']:.2f} s "
        f"({summary['rows_per_s'] or 0:,} rows/s)"
    )
    out.print(f"wrote {summary['output']}: {', '.join(summary['columns'])}")
