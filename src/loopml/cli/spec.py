"""`loopml spec`: check loopml.yaml, export its JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, out, print_json

app = typer.Typer(help="Check the project spec or export its JSON Schema.", no_args_is_help=True)


@app.command("check")
def check(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Validate loopml.yaml; errors name the key and the line.

    With a features section, the features are also resolved against what is known of the
    sources' columns (their schemas once data arrived, or the types loopml.yaml declares), so
    an unknown column or a label named like a column is found here, not at training time.
    """
    from loopml.spec import load_spec

    spec = load_spec(project)
    sources = sorted(spec.sources)
    notes: list[str] = []
    checked = False
    if spec.features is not None:
        checked = _check_features(project, notes)
        if spec.features.label is None:
            notes.append(
                "features.label is not set: `loopml train` needs it (what the model predicts)"
                + _placeholder(project)
            )
    if json:
        print_json(
            {
                "valid": True,
                "project": spec.project,
                "sources": sources,
                "features_checked": checked,
                "notes": notes,
            }
        )
    else:
        out.print(
            f"loopml.yaml is valid: project {spec.project}, sources: {', '.join(sources) or 'none'}"
            + ("; features resolved against the sources' columns" if checked else "")
        )
        for note in notes:
            out.print(f"note: {note}", style="yellow")
    return 0


def _placeholder(project: Path) -> str:
    """Where a drafted spec's label placeholder is, if it has one."""
    path = project / "loopml.yaml" if project.is_dir() else project
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines, start=1):
        if line.strip() == "# label:":
            return f"; fill in the placeholder at {path.name}:{i}"
    return ""


def _check_features(project: Path, notes: list[str]) -> bool:
    """Resolve the feature set when every source it reads has a schema (errors raise)."""
    from loopml.cli._common import open_project
    from loopml.errors import SpecError

    with open_project(project) as p:
        fs = p.spec.features
        assert fs is not None
        schemas = p.data.schemas()
        needed = [fs.event.source] + [lk.source for lk in fs.lookups.values()]
        needed += [w.source for w in fs.windows.values()]
        missing = sorted({s for s in needed if s not in schemas})
        if missing:
            notes.append(
                f"features not checked against the data: {', '.join(missing)} has no schema yet "
                "(ingest a file, or declare its columns' types in loopml.yaml)"
            )
            return False
        try:
            p.features.feature_set  # noqa: B018 - resolving it is the check
        except SpecError as exc:
            partial = [s for s in set(needed) if schemas[s].declared_only]
            if not partial or "has no column" not in exc.message:
                raise
            # Declaring a few types before any data does not list every column.
            notes.append(
                f"features not fully checked: {', '.join(sorted(partial))} has no data yet and "
                f"loopml.yaml declares only some of its columns ({exc.message})"
            )
            return False
    return True


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
