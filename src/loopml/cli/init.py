"""`loopml init`: a new project folder with a commented loopml.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOpt, out, print_json


def init(
    directory: Annotated[
        Path | None, typer.Argument(help="Folder to create the project in.", show_default=False)
    ] = None,
    project: Annotated[
        Path | None, typer.Option("--project", "-p", help="Same as DIRECTORY.", show_default=False)
    ] = None,
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder's).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing loopml.yaml.")] = False,
    json: JsonOpt = False,
) -> int:
    """Create a project: a commented example loopml.yaml and its storage folders."""
    from loopml._project import Project

    with Project.init(directory or project or Path("."), name=name, force=force) as created:
        summary = {
            "project": created.spec.project,
            "root": str(created.root),
            "spec": str(created.root / "loopml.yaml"),
            "metadata": created.store.describe(),
        }
    if json:
        print_json(summary)
    else:
        out.print(f"created project {summary['project']} in {summary['root']}")
        out.print(f"edit {summary['spec']}, then: loopml ingest SOURCE FILE")
    return 0
