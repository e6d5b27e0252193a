"""`loopml features show | build | materialize | get`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json, table
from loopml.errors import UsageError

app = typer.Typer(
    help="Feature definitions, training sets and the online store.", no_args_is_help=True
)


@app.command("show")
def show(project: ProjectOpt = Path("."), json: JsonOpt = False) -> int:
    """Every feature: its kind, type and where it comes from; the definitions' hash."""
    with open_project(project) as p:
        fs = p.features.feature_set
    rows = [
        {
            "feature": f.name,
            "kind": f.kind,
            "type": f.type,
            "from": f.group or "",
            "in_vector": f.name in fs.vector,
        }
        for f in fs.features.values()
    ]
    if json:
        print_json(
            {
                "features": rows,
                "label": fs.label.name if fs.label else None,
                "definitions_hash": fs.definitions_hash,
                "vector": fs.vector,
            }
        )
        return 0
    table(
        None,
        ["feature", "kind", "type", "from", "model input"],
        [
            [r["feature"], r["kind"], r["type"], r["from"], "yes" if r["in_vector"] else ""]
            for r in rows
        ],
    )
    out.print(
        f"label: {fs.label.name if fs.label else '-'}   definitions hash: {fs.definitions_hash[:16]}"
    )
    return 0


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not an ISO date or datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("build")
def build(
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the training set (.parquet).")
    ],
    snapshot: Annotated[
        str | None, typer.Option(help="Build from this snapshot (default: take one now).")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Only events before this time, and labels known by then."),
    ] = None,
    sample: Annotated[
        str | None, typer.Option(help="random:FRAC | stratified:COLUMN:FRAC | reservoir:N.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for --sample.")] = 0,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Build a point-in-time correct training set for every labelled event."""
    from loopml.features import describe, sampler

    with open_project(project) as p:
        ts = p.features.build(
            snapshot=snapshot,
            as_of=_when(as_of, "--as-of"),
            out=out_file,
            sample=sampler(sample, seed=seed) if sample else None,
        )
    summary: dict[str, Any] = {**describe(ts), "out": str(out_file)}
    if json:
        print_json(summary)
    else:
        out.print(
            f"training set: {summary['rows']:,} rows, {summary['features']} model inputs, label "
            f"{summary['label']}, snapshot {summary['snapshot']}, definitions {summary['definitions_hash'][:12]}"
        )
        out.print(f"wrote {out_file}")
    return 0


@app.command("materialize")
def materialize(
    snapshot: Annotated[
        str | None, typer.Option(help="Bring the online store up to this snapshot.")
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Write the latest lookup values and the window tiles to the online store."""
    with open_project(project) as p:
        counts = p.features.materialize(snapshot=snapshot)
    if json:
        print_json(counts)
    else:
        out.print(f"online store brought to snapshot {counts['snapshot']}")
        for name, n in counts["lookups"].items():
            out.print(f"  lookup {name}: {n:,} values written")
        for name, n in counts["tiles"].items():
            out.print(f"  window {name}: {n:,} tiles folded in")
    return 0


@app.command("get")
def get(
    fields: Annotated[list[str], typer.Argument(help="Request fields as NAME=VALUE.")],
    at: Annotated[
        str | None, typer.Option(help="The request time, if the spec does not compute one.")
    ] = None,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Compute one request's feature vector from the online store."""
    request: dict[str, Any] = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{item!r}: write request fields as NAME=VALUE")
        request[name] = _scalar(value)
    with open_project(project) as p:
        p.features.online.check_store()  # an empty store is said, not read as nulls and zeros
        vector = p.features.vector(request, at=at)
    if json:
        print_json(vector)
        return 0
    flags = vector.pop("_flags", None) or {}
    table(None, ["feature", "value"], [[k, v] for k, v in vector.items()])
    for name, kinds in flags.items():
        for kind in kinds:
            out.print(f"{name}: {kind} ({_FLAG_MEANING.get(kind, kind)})", style="yellow")
    return 0


_FLAG_MEANING = {
    "newer_than_event": "the store's value is from after the event time: not used, null",
    "older_than_ttl": "the store's value is older than the lookup's TTL at the event time: null",
    "from_cache": "read from the feature cache",
    "stale_store": "the online store holds nothing for it: run `loopml features materialize`",
}


def _scalar(text: str) -> Any:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text, text)
