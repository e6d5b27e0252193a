"""`loopml spec`: check loopml.yaml, export its JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, out, print_json

app = typer.Typer(help="Check the project spec or export its JSON Schema.", no_args_is_help=True)


@app.command("check")
def check(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Validate loopml.yaml; errors name the key and the line."""
    from loopml.spec import load_spec

    spec = load_spec(project)
    sources = sorted(spec.sources)
    if json:
        print_json({"valid": True, "project": spec.project, "sources": sources})
    else:
        out.print(
            f"loopml.yaml is valid: project {spec.project}, sources: {', '.join(sources) or 'none'}"
        )
    return 0


@app.command("json-schema")
def json_schema(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> int:
    """Print the JSON Schema of loopml.yaml (for editors and CI)."""
    from loopml.spec import spec_json_schema

    text = spec_json_schema()
    if out_file is None:
        print(text)
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text + "\n", encoding="utf-8")
        out.print(f"wrote {out_file}")
    return 0
