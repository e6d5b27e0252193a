"""`loopml init`: a new project folder with a commented loopml.yaml, or one drafted from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopml.cli._common import JsonOpt, out, print_json, table


def init(
    directory: Annotated[
        Path | None, typer.Argument(help="Folder to create the project in.", show_default=False)
    ] = None,
    project: Annotated[
        Path | None, typer.Option("--project", "-p", help="Same as DIRECTORY.", show_default=False)
    ] = None,
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Draft the whole loopml.yaml from this sample of your data (CSV, TSV, Parquet "
            "or JSON Lines): types, identifiers, keys, features, model, monitoring, loop.",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="With --from: the source's name (default: from the file's name)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder's).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing loopml.yaml.")] = False,
    json: JsonOpt = False,
) -> int:
    """Create a project: loopml.yaml (a commented template, or drafted from your data with
    --from) and the JSON Schema it points editors at (.loopml/spec.schema.json)."""
    from loopml._scaffold import check_writable, project_name, write_project
    from loopml.spec import SCHEMA_FILE

    root = (directory or project or Path(".")).resolve()
    draft = None
    if from_ is not None:
        from loopml.draft import draft_spec

        check_writable(root, force=force)  # before reading a large file for nothing
        draft = draft_spec(from_, root=root, name=name or project_name(root), source=source)
        spec = write_project(root, text=draft.text, force=force)
    else:
        spec = write_project(root, name=name, force=force)
    summary = {
        "project": spec.project,
        "root": str(root),
        "spec": str(root / "loopml.yaml"),
        "schema": str(root / SCHEMA_FILE),
        "metadata": _where(spec.storage.metadata, root),
        **({"draft": draft.to_dict()} if draft is not None else {}),
    }
    if json:
        print_json(summary)
        return 0
    out.print(f"created project {summary['project']} in {summary['root']}")
    if draft is None:
        out.print(f"wrote {summary['spec']} (a commented template) and {SCHEMA_FILE}")
        out.print(
            "next: declare your sources in loopml.yaml, or draft the whole file from a sample "
            "with `loopml init --from FILE --force`; then `loopml ingest SOURCE FILE`"
        )
        return 0
    rows = f"the first {draft.rows:,} rows" if draft.sampled else f"{draft.rows:,} rows"
    out.print(
        f"wrote {summary['spec']}, drafted from {rows} of {Path(draft.file).name} "
        f"(source {draft.source}), and {SCHEMA_FILE}"
    )
    table(
        "what the draft chose",
        ["key", "value", "why"],
        [[c.key, c.value, c.why] for c in draft.choices],
    )
    out.print("to decide before training (marked TO DECIDE in loopml.yaml):", style="bold")
    for item in draft.to_decide:
        out.print(f"  - {item}")
    out.print(
        f"next: `loopml spec check`, then `loopml ingest {draft.source} {draft.file}`, "
        "`loopml features show`"
    )
    return 0


def _where(config: object, root: Path) -> str:
    """Where the metadata store will be, without credentials (it is created on first use)."""
    path = getattr(config, "path", None)
    if path is not None:
        return f"sqlite:///{(root / path).resolve()}"
    scheme, _, rest = str(getattr(config, "url", "")).partition("://")
    return f"{scheme}://{rest.split('@')[-1]}"
