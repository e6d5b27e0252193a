"""`loopml ui`: the dashboard."""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import ProjectOpt, out
from loopml.errors import UsageError


def ui(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8050,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
    serving: Annotated[
        str | None,
        typer.Option(
            "--serving",
            help="A running `loopml serve` (e.g. http://127.0.0.1:8000) whose live numbers the "
            "serving page shows, read from its /metrics and /status.",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = Path("."),
) -> int:
    """The dashboard: the incident timeline (home), who served what, data and quarantine,
    models, monitoring, serving and experiments, the loop. Anyone who can reach it reads it;
    actions need the serving token (LOOPML_TOKEN by default) and are recorded with who and why.
    The same pages are at /ui on `loopml serve`."""
    import uvicorn

    from loopml.spec import load_spec

    load_spec(project)  # a bad spec is an error now, not on the first page
    os.environ["LOOPML_PROJECT"] = str(Path(project).resolve())
    if serving:
        if not serving.startswith(("http://", "https://")):
            raise UsageError(
                f"--serving {serving}: give the server's URL, e.g. http://127.0.0.1:8000"
            )
        os.environ["LOOPML_SERVING"] = serving
    threading.Thread(
        target=_announce, args=(host, port), name="loopml-ui-announce", daemon=True
    ).start()
    uvicorn.run(
        "loopml.ui._app:ui_from_env",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
    )
    return 0


def _announce(host: str, port: int, *, poll: float = 0.2, patience: float = 60.0) -> None:
    """Print the address once the dashboard answers (never before: an address printed before
    the server listens would be a promise it might not keep)."""
    wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host)
    local = f"http://{wildcard or (f'[{host}]' if ':' in host else host)}:{port}/ui/"
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(local, timeout=2) as answer:
                if answer.status == 200:
                    out.print(f"the dashboard is at {local}")
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(poll)
