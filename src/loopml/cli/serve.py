"""`loopml serve` and `loopml precompute`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json
from loopml.errors import UsageError
from loopml.spec import parse_duration


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (each watches the champion).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
    project: ProjectOpt = Path("."),
) -> int:
    """Serve the champion over HTTP: /predict, the Open Inference Protocol (/v2), /metrics,
    /healthz, /readyz and the OpenAPI docs at /docs."""
    import uvicorn

    from loopml.spec import load_spec

    load_spec(project)  # a bad spec is an error now, not in every worker
    os.environ["LOOPML_PROJECT"] = str(Path(project).resolve())
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers write their metrics to files that /metrics merges.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="loopml-metrics-")
    uvicorn.run(
        "loopml.serving._app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
    )
    return 0


def precompute(
    version: Annotated[
        str | None,
        typer.Option("--version", help="The version or alias (default: the served alias)."),
    ] = None,
    head: Annotated[
        int | None, typer.Option(help="Only the N most requested keys (hybrid serving).")
    ] = None,
    window: Annotated[
        str, typer.Option(help="Keys seen within this period of the newest event.")
    ] = "28d",
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Write the static table: a prediction for every key of serving.static.key."""
    try:
        period = parse_duration(window)
    except ValueError as exc:
        raise UsageError(f"--window: {exc}") from None
    with open_project(project) as p:
        ref = int(version) if version and version.isdigit() else version
        summary = p.serving.precompute(ref=ref, head=head, window=period)
    if json:
        print_json(summary)
    else:
        out.print(
            f"precomputed {summary['keys']:,} predictions of {summary['model']}:{summary['version']} "
            f"keyed by {', '.join(summary['key'])} into {summary['table']} "
            f"({summary['bytes'] / 1e6:.2f} MB) in {summary['seconds']:.1f} s"
        )
    return 0
