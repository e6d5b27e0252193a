"""Demo, part 2: the flights features. A point-in-time training set for January–February as known
on March 1st, a check that no row saw the future, the online store, and one request's vector
computed online beside its training row."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from loopml._project import Project

AS_OF = datetime(2013, 3, 1, tzinfo=UTC)


def run_features(console: Console, project: Project, root: Path) -> dict[str, Any]:
    console.print()
    console.rule("4. features: one definition for training and serving")
    fs = project.features.feature_set
    kinds: dict[str, int] = {}
    for f in fs.features.values():
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    console.print(
        f"{len(fs.features)} features ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
        f"{len(fs.vector)} model inputs, label {fs.label.name if fs.label else '-'}; "
        f"definitions hash {fs.definitions_hash[:12]}"
    )
    out = root / "training" / "jan_feb.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ts = project.features.build(as_of=AS_OF, out=out)
    seconds = time.perf_counter() - started
    t = ts.table
    positive = pc.mean(t["delayed"].cast(pa.int64())).as_py() or 0.0
    console.print(
        f"training set: {t.num_rows:,} flights of January–February with their labels as known on "
        f"{AS_OF:%Y-%m-%d}, {positive:.1%} delayed; built in {seconds:.2f} s from snapshot "
        f"{ts.snapshot}; written to {out}"
    )
    leaks = _leaks(t)
    console.print(
        "point in time: "
        + (
            "no row uses a value from after its event time, or a label not yet known"
            if not leaks
            else f"{leaks} problems!"
        )
    )
    counts = project.features.materialize(snapshot=ts.snapshot)
    console.print(
        "online store: "
        + ", ".join(f"{n:,} {name} values" for name, n in counts["lookups"].items())
        + ", "
        + ", ".join(f"{n:,} {name} tiles" for name, n in counts["tiles"].items())
    )
    # The online store holds the latest values, so compare with the training row of a flight
    # for which "latest" and "as of its departure" are the same: the last one that saw the last
    # weather reading of its airport.
    everything = project.features.build(snapshot=ts.snapshot, labelled_only=False).table
    latest = pc.max(everything["_weather_ts"])
    saw_it = everything.filter(pc.equal(everything["_weather_ts"], latest)).sort_by("_event_time")
    row = saw_it.slice(saw_it.num_rows - 1, 1).to_pylist()[0]
    vector = project.features.vector({k: row[k] for k in fs.request})
    table = Table(
        title=f"flight {row['carrier']}{row['flight']} {row['origin']}->{row['dest']} at {row['_event_time']:%Y-%m-%d %H:%M} UTC",
        title_justify="left",
    )
    for col in ("feature", "online", "training set"):
        table.add_column(col)
    same = 0
    for name in fs.vector:
        a, b = vector[name], row[name]
        same += a == b or (
            isinstance(a, float) and isinstance(b, float) and abs(a - b) <= 1e-12 * max(1.0, abs(b))
        )
        table.add_row(name, _show(a), _show(b))
    console.print(table)
    console.print(f"{same} of {len(fs.vector)} model inputs equal online and offline")
    return {
        "training_rows": t.num_rows,
        "positive_rate": round(positive, 4),
        "build_seconds": round(seconds, 2),
        "leaks": leaks,
        "online_equal": same,
        "vector_size": len(fs.vector),
        "training_set": str(out),
        "snapshot": ts.snapshot,
    }


def _leaks(t: pa.Table) -> int:
    """Rows that use a weather reading from after their event time, or a label not known yet."""

    def count(mask: pa.ChunkedArray) -> int:
        return int(pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0)

    cutoff = pa.scalar(AS_OF, pa.timestamp("us", tz="UTC"))
    n = count(pc.greater(t["_label_available_at"], cutoff))
    if "_weather_ts" in t.column_names:
        n += count(pc.greater(t["_weather_ts"], t["_event_time"]))
    return n


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
