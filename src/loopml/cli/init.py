"""`loopml init`: a new project folder with a commented loopml.yaml, or one drafted from a file."""

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
    """Create a project: a commented loopml.yaml and the JSON Schema it points editors at."""
    from loopml._scaffold import write_project
    from loopml.spec._template import SCHEMA_FILE

    root = (directory or project or Path(".")).resolve()
    spec = write_project(root, name=name, force=force)
    summary = {
        "project": spec.project,
        "root": str(root),
        "spec": str(root / "loopml.yaml"),
        "schema": str(root / SCHEMA_FILE),
        "metadata": _where(spec.storage.metadata, root),
    }
    if json:
        print_json(summary)
    else:
        out.print(f"created project {summary['project']} in {summary['root']}")
        out.print(f"wrote {summary['spec']} (a commented template) and {SCHEMA_FILE}")
        out.print(
            "next: declare your sources in loopml.yaml, or draft the whole file from a sample "
            "with `loopml init --from FILE --force`; then `loopml ingest SOURCE FILE`"
        )
    return 0


def _where(config: object, root: Path) -> str:
    """Where the metadata store will be, without credentials (it is created on first use)."""
    path = getattr(config, "path", None)
    if path is not None:
        return f"sqlite:///{(root / path).resolve()}"
    scheme, _, rest = str(getattr(config, "url", "")).partition("://")
    return f"{scheme}://{rest.split('@')[-1]}"
