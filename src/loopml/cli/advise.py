"""`loopml advise-serving`: static, dynamic or hybrid serving, from measurements."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loopml.cli._common import JsonOpt, ProjectOpt, open_project, out, print_json, table
from loopml.errors import ReadError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from loopml.serving import Advice


def read_requests(path: Path) -> pa.Table:
    """Request rows from a Parquet, CSV or JSON Lines file (by its extension)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    readers = {
        ".parquet": pq.read_table,
        ".csv": pacsv.read_csv,
        ".jsonl": pajson.read_json,
        ".ndjson": pajson.read_json,
        ".json": pajson.read_json,
    }
    if suffix not in readers:
        raise UsageError(
            f"--requests {path}: unknown format {suffix or '(no extension)'!r}; "
            "use .parquet, .csv or .jsonl",
            details={"file": str(path)},
        )
    if not path.exists():
        raise ReadError(f"--requests {path}: no such file", details={"file": str(path)})
    try:
        return readers[suffix](str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReadError(
            f"--requests {path}: cannot read it as {suffix[1:]}: {exc}", details={"file": str(path)}
        ) from None


def advise_serving(
    requests: Annotated[
        Path | None,
        typer.Option(
            "--requests",
            help="Request rows (Parquet, CSV or JSON Lines). Default: the prediction log.",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            help="The features a precomputed prediction is keyed by, comma-separated "
            "(default: serving.static.key)."
        ),
    ] = None,
    sample: Annotated[int, typer.Option(help="Requests whose latency is measured.")] = 2000,
    head: Annotated[
        int | None,
        typer.Option(
            help="Keys precomputed for the hybrid measurement (default: the fewest covering "
            "90% of requests, at most serving.hybrid.head)."
        ),
    ] = None,
    max_divergence: Annotated[
        float,
        typer.Option(
            help="How far a table's answers may be from the model's on the same requests, as a "
            "share of how much the model's answers vary between requests (mean absolute "
            "deviation); farther, static and hybrid are not recommended.",
            min=0.0,
        ),
    ] = 0.25,
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> int:
    """Measure static, dynamic and hybrid serving on real requests and recommend one: how peaked
    the requests are over the keys, how many keys there are, what a static table would take,
    each mode's latency, and how far a table's answers are from the model's on the same
    requests. Precomputes into the online store as it measures."""
    from loopml.serving import Rule, advise, save_advice

    keys = [k.strip() for k in key.split(",") if k.strip()] if key else None
    rows = read_requests(requests) if requests is not None else None
    with open_project(project) as p:
        rule = Rule(max_head=p.spec.serving.hybrid.head, max_divergence=max_divergence)
        advice = advise(p, rows, key=keys, sample=sample, head=head, rule=rule)
        kept = save_advice(advice, p.root)
    if json:
        print_json(advice.to_dict())
    else:
        show(advice)
        out.print(f"kept in {kept} (the dashboard's serving page shows it)")
    return 0


def show(a: Advice) -> None:
    """The advice as tables."""
    pk, u, s = a.peakedness, a.universe, a.storage
    out.print(
        f"{a.model}:{a.version}, key ({', '.join(a.key)}), {a.requests:,} requests from {a.source}"
    )
    top = ", ".join(f"top {k}: {v:.1%}" for k, v in pk.top_share.items())
    need = ", ".join(f"{k}: {v:,}" if v is not None else f"{k}: -" for k, v in pk.keys_for.items())
    table(
        "the requests",
        ["figure", "value"],
        [
            ["distinct keys (cardinality)", f"{pk.keys:,} ({pk.unique_share:.1%} of requests)"],
            ["requests with a null key part", f"{pk.unkeyed:,}"],
            ["share covered by the most requested keys", top],
            ["keys needed to cover", need],
            ["Gini of key frequencies", f"{pk.gini:.3f}"],
            [
                "universe (keys in the lake)",
                f"{u.keys:,} ({u.recent_keys:,} seen in the last 28 days)",
            ],
            ["requests whose key is in the universe", f"{u.coverage:.1%}"],
        ],
    )
    table(
        f"what each mode costs, in process, on the same sample (feature cache {a.feature_cache_s:g} s)",
        ["mode", "requests", "median µs", "p99 µs", "answered from the table", "fallbacks"],
        [
            [
                m.mode,
                f"{m.requests:,}",
                f"{m.median_us:,.1f}",
                f"{m.p99_us:,.1f}",
                f"{m.static_share:.1%}",
                f"{m.fallbacks:,}",
            ]
            for m in a.latency.values()
        ],
    )
    table(
        None,
        ["figure", "value"],
        [
            [
                "static table",
                f"{s.keys_precomputed:,} keys precomputed in {s.seconds:.2f} s, "
                f"{s.bytes_precomputed:,} bytes ({s.bytes_per_key:.0f} per key)",
            ],
            [
                "the universe's table" + (" (extrapolated)" if s.extrapolated else ""),
                f"{s.universe_bytes:,} bytes, {s.universe_seconds:,.2f} s",
            ],
            [
                "dynamic compute",
                f"{a.compute.cpu_seconds_per_1000:.3f} CPU-seconds per 1,000 requests",
            ],
            [
                "hybrid head",
                f"{a.hybrid.head:,} keys ({a.hybrid.chosen_by}): {a.hybrid.head_share:.1%} of "
                f"requests, hit rate {a.hybrid.hit_rate:.1%} on the sample",
            ],
            [
                "static answers against dynamic ones",
                "-" if a.static_vs_dynamic is None else a.static_vs_dynamic.describe(),
            ],
            [
                "hybrid's table answers against dynamic ones",
                "-" if a.hybrid_vs_dynamic is None else a.hybrid_vs_dynamic.describe(),
            ],
            [
                "dynamic answers flagged",
                ", ".join(f"{k}: {n:,}" for k, n in a.dynamic_flags.items()) or "none",
            ],
        ],
    )
    rec = a.recommendation
    out.print(f"recommendation: {rec.mode}")
    for reason in rec.reasons:
        out.print(f"  - {reason}")
    for note in rec.notes:
        out.print(f"  note: {note}")
