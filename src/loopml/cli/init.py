"""`loopml init`: a new project folder with a commented loopml.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOpt, out, print_json


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder's).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing loopml.yaml.")] = False,
    json: JsonOpt = False,
) -> int:
    """Create a project: a commented example loopml.yaml and its storage folders."""
    from loopml._project import Project

    with Project.init(directory, name=name, force=force) as project:
        summary = {
            "project": project.spec.project,
            "root": str(project.root),
            "spec": str(project.root / "loopml.yaml"),
            "metadata": project.store.describe(),
        }
    if json:
        print_json(summary)
    else:
        out.print(f"created project {summary['project']} in {summary['root']}")
        out.print(f"edit {summary['spec']}, then: loopml ingest SOURCE FILE")
    return 0
