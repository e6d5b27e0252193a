"""Features benchmark: the point-in-time training set for all 336,776 flights, and one request's
online feature vector.

The training set has weather as of each scheduled departure (TTL 3 h), plane features, departures
from the same origin in the previous 1 h and 3 h (count and mean delay, from tiles), the derived
features and the label (the demo's definitions). It is printed beside a bare DuckDB ASOF JOIN of
flights and weather on the same lake, in the same run (the limit). For scale: Feast's local offline
store needs 54 s and 12.5 GB for the weather join of 10,000 flights on these machines.

    python benchmarks/features.py [--repeat 3] [--requests 2000] [--json]

Targets (DESIGN.md and the features issue): training set <= 2 s; online vector <= 200 us in
process on SQLite, <= 1 ms on Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from loopml import Project
from loopml.data._lake import fetch_arrow
from loopml.demo import table_csv
from loopml.demo._ingest import DEMO_SPEC
from loopml.features import OnlineFeatures
from loopml.spec import RedisConfig, SQLiteConfig
from loopml.storage import open_online

LIMIT_SQL = """
    SELECT f.*, w.temp, w.dewp, w.humid, w.wind_speed, w.precip, w.pressure, w.visib
    FROM flights f ASOF LEFT JOIN weather w
      ON f.origin = w.origin AND f.time_hour >= w.time_hour
"""


def setup(root: Path) -> Project:
    root.mkdir(parents=True)
    (root / "loopml.yaml").write_text(DEMO_SPEC)
    project = Project.open(root)
    for name in ("planes", "weather", "flights"):
        path = table_csv(name, root / f"{name}.csv")
        project.data.ingest(name, [path])
    return project


def time_limit(project: Project, snapshot: str) -> float:
    with project.data.lake.connect(snapshot) as con:
        start = time.perf_counter()
        table = fetch_arrow(con.sql(LIMIT_SQL))
        elapsed = time.perf_counter() - start
    assert table.num_rows > 300_000
    return elapsed


def time_online(
    project: Project, store_config: SQLiteConfig | RedisConfig, requests: list[dict], root: Path
) -> list[float]:
    fs = project.features.feature_set
    store = open_online(store_config, root=root)
    online = OnlineFeatures(fs, store)
    with project.data.lake.connect() as con:
        for lk in fs.lookups.values():
            online.materialize_lookup(con, lk)
        for b in project.data.lake.batches():
            for w in fs.windows.values():
                if b.source == w.source and b.lake_path:
                    rows = project.data.lake.read_parquet(b.lake_path).select(w.source_columns())
                    online.materialize_tiles(con, w, b.id, rows)
    for r in requests[:50]:  # warm caches
        online.vector(r)
    times = []
    for r in requests:
        start = time.perf_counter()
        online.vector(r)
        times.append(time.perf_counter() - start)
    if isinstance(store_config, RedisConfig):
        store.drop_table("lookup:weather")
        store.drop_table("lookup:plane")
        store.drop_table("tiles:origin_departures")
    store.close()
    return times


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loopml-bench-features-"))
    try:
        project = setup(tmp / "project")
        snapshot = project.data.snapshot(note="benchmark").id
        project.features.build(snapshot=snapshot)  # warm-up: imports, caches
        ours, limit = [], []
        for _ in range(args.repeat):
            limit.append(time_limit(project, snapshot))
            start = time.perf_counter()
            ts = project.features.build(snapshot=snapshot)
            ours.append(time.perf_counter() - start)
        rows = ts.table.num_rows
        fs = project.features.feature_set
        table = project.features.build(snapshot=snapshot, labelled_only=False).table
        step = max(1, table.num_rows // args.requests)
        requests = [
            {k: r[k] for k in fs.request}
            for r in table.take(list(range(0, table.num_rows, step))).to_pylist()
        ]
        sqlite_times = time_online(project, SQLiteConfig(path="bench-online.db"), requests, tmp)
        redis_times = None
        if redis_up():
            prefix = f"loopml-bench-{uuid.uuid4().hex[:8]}"
            redis_times = time_online(
                project,
                RedisConfig(
                    url=os.environ.get("LOOPML_TEST_REDIS", "redis://127.0.0.1:6379/0"),
                    prefix=prefix,
                ),
                requests,
                tmp,
            )
        report = {
            "training_rows": rows,
            "training_set_s": round(statistics.median(ours), 3),
            "limit_asof_join_s": round(statistics.median(limit), 3),
            "ratio_to_limit": round(statistics.median(ours) / statistics.median(limit), 2),
            "target_training_set_s": 2.0,
            "online_sqlite_us_median": round(statistics.median(sqlite_times) * 1e6, 1),
            "online_sqlite_us_p99": round(pct(sqlite_times, 0.99) * 1e6, 1),
            "target_online_sqlite_us": 200,
            "online_redis_us_median": round(statistics.median(redis_times) * 1e6, 1)
            if redis_times
            else None,
            "online_redis_us_p99": round(pct(redis_times, 0.99) * 1e6, 1) if redis_times else None,
            "target_online_redis_us": 1000,
        }
        report["meets_targets"] = (
            report["training_set_s"] <= 2.0
            and report["online_sqlite_us_median"] <= 200
            and (
                report["online_redis_us_median"] is None or report["online_redis_us_median"] <= 1000
            )
        )
        if args.json:
            print(json.dumps(report))
        else:
            print(f"training set for {rows:,} labelled flights (median of {args.repeat})")
            print(f"{'what':<58}{'time':>12}")
            print(
                f"{'limit: bare DuckDB ASOF JOIN flights x weather':<58}{report['limit_asof_join_s']:>11.3f}s"
            )
            print(
                f"{'loopml features build (weather, planes, 2 windows, derived)':<58}{report['training_set_s']:>11.3f}s"
            )
            print(f"{'  target':<58}{'<= 2.000s':>12}")
            print(f"online feature vector, {len(requests):,} requests, in process")
            print(
                f"{'  SQLite online store: median / p99':<58}{report['online_sqlite_us_median']:>7.0f} / {report['online_sqlite_us_p99']:.0f} us (target <= 200)"
            )
            if redis_times:
                print(
                    f"{'  Redis online store: median / p99':<58}{report['online_redis_us_median']:>7.0f} / {report['online_redis_us_p99']:.0f} us (target <= 1000)"
                )
            else:
                print("  Redis online store: skipped (no server at 127.0.0.1:6379)")
            print("targets " + ("met" if report["meets_targets"] else "NOT met"))
        project.close()
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
