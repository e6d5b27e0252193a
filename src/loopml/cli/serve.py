"""`loopml serve` and `loopml precompute`."""

from __future__ import annotations

import json as _json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

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
    /healthz, /readyz, the OpenAPI docs at /docs and the dashboard at /ui."""
    import uvicorn

    from loopml.spec import load_spec

    spec = load_spec(project)  # a bad spec is an error now, not in every worker
    if spec.model is None:
        raise UsageError("loopml.yaml has no model section: there is no model to serve")
    os.environ["LOOPML_PROJECT"] = str(Path(project).resolve())
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers write their metrics to files that /metrics merges.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="loopml-metrics-")
    threading.Thread(
        target=_announce, args=(host, port, workers), name="loopml-announce", daemon=True
    ).start()
    uvicorn.run(
        "loopml.ui._app:serving_with_ui_from_env",
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


def _announce(host: str, port: int, workers: int, *, poll: float = 0.2) -> None:
    """Say where the server is, and what it serves, once it answers /readyz; say so as well
    when it listens but has no model to serve (it answers 503 until one is promoted or loads),
    and why: no version holds the alias, or which version, file and check failed."""
    wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host)
    local = f"http://{wildcard or (f'[{host}]' if ':' in host else host)}:{port}"
    where = (
        local
        if wildcard is None
        else f"{local} (listening on every interface, {host or '0.0.0.0'})"
    )
    waiting_said = False
    while True:
        code, status = _readyz(f"{local}/readyz")
        serving = status.get("serving") or {}
        if code == 200:
            out.print(
                f"serving {status.get('model')} version {serving.get('version')} (alias "
                f"{serving.get('alias')}, mode {status.get('mode')}) at {where}, {workers} "
                f"worker{'s' if workers != 1 else ''}; POST /predict, docs at /docs, metrics at "
                "/metrics, dashboard at /ui"
            )
            if serving.get("fallback"):
                out.print(
                    f"version {serving.get('alias_version')} holds {serving.get('alias')!r} but "
                    f"does not load; retried with backoff and on POST /admin/reload: "
                    f"{serving.get('last_error')}",
                    style="yellow",
                )
            empty = status.get("online_store_empty") or []
            if empty:
                out.print(
                    f"the online store holds nothing for {', '.join(empty)}: their features are "
                    "null (counts zero) in every answer, flagged stale_store, until `loopml "
                    "features materialize`",
                    style="yellow",
                )
            return
        if code == 503 and not waiting_said and serving.get("failure"):
            out.print(
                f"listening at {where}, but nothing can be served: {status.get('unavailable')}; "
                "/predict answers 503 until a version loads",
                style="yellow",
            )
            waiting_said = True
        elif code == 503 and not waiting_said:
            error = serving.get("last_error")
            out.print(
                f"listening at {where}, but no version of {status.get('model')} holds the alias "
                f"{serving.get('alias')!r} yet: /predict answers 503 until one is promoted "
                "(loopml models promote VERSION)" + (f"; loading failed: {error}" if error else ""),
                style="yellow",
            )
            waiting_said = True
        time.sleep(poll)


def _readyz(url: str) -> tuple[int | None, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), _json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, _json.loads(exc.read())
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError):
        return None, {}  # not listening yet


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
