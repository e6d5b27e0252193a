"""Demo, part 4: serve the champion over HTTP and send it a day of flights, dynamic, hybrid and
static side by side; then the advisor's measured recommendation."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from loopml._project import Project
from loopml.spec import ServingSpec

DAY = datetime(2013, 3, 1, 5, tzinfo=UTC)  # a day in New York, in UTC


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """uvicorn on a free local port, in a thread, serving one runtime."""

    def __init__(self, project: Project, spec: ServingSpec) -> None:
        import uvicorn

        from loopml.serving import Runtime, create_app

        self.port = _free_port()
        app = create_app(runtime=Runtime(project, spec=spec))
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            loop="uvloop",
            http="httptools",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the demo server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def day_of_requests(project: Project) -> tuple[pa.Table, list[dict[str, Any]]]:
    fs = project.features.feature_set
    table = project.features.build(labelled_only=False).table
    day = table.filter(
        pc.and_(
            pc.greater_equal(table["_event_time"], pa.scalar(DAY, table["_event_time"].type)),
            pc.less(
                table["_event_time"], pa.scalar(DAY + timedelta(days=1), table["_event_time"].type)
            ),
        )
    ).sort_by("_event_time")
    requests = [
        {**{k: r[k] for k in fs.request}, "time_hour": r["time_hour"].isoformat()}
        for r in day.to_pylist()
    ]
    return day.select(fs.request), requests


def _send(base: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    latencies, modes, errors = [], [], 0
    with httpx.Client(base_url=base, timeout=10) as client:
        for q in requests:
            start = time.perf_counter()
            r = client.post("/predict", json=q)
            latencies.append((time.perf_counter() - start) * 1000)
            if r.status_code != 200:
                errors += 1
                continue
            modes.append(r.json()["mode"])
    latencies.sort()
    return {
        "requests": len(requests),
        "errors": errors,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "from_table": sum(m == "static" for m in modes) / max(len(modes), 1),
    }


def run_serving(console: Console, project: Project) -> dict[str, Any]:
    console.print()
    console.rule("6. serving: a day of flights, dynamic, hybrid and static")
    base_spec = project.spec.serving.model_dump(mode="json")
    base_spec["static"] = {"key": ["origin", "dest", "carrier", "hour"]}
    table, requests = day_of_requests(project)
    console.print(
        f"{len(requests):,} flights scheduled on {DAY:%Y-%m-%d} sent one by one to the champion over HTTP"
    )
    results: dict[str, Any] = {}
    storage: dict[str, int] = {"dynamic": 0}
    with _Server(project, ServingSpec.model_validate({**base_spec, "mode": "dynamic"})) as base:
        results["dynamic"] = _send(base, requests)
    # The hybrid head: the keys that took 90% of the day's requests (the advisor's rule).
    from loopml.serving import advise

    advice = advise(project, table, key=base_spec["static"]["key"], sample=min(1000, len(requests)))
    head = advice.hybrid.head
    keys = _top_keys(project, table, base_spec["static"]["key"], head)
    hybrid_table = project.serving.precompute(keys=keys)
    storage["hybrid"] = hybrid_table["bytes"]
    with _Server(project, ServingSpec.model_validate({**base_spec, "mode": "hybrid"})) as base:
        results["hybrid"] = _send(base, requests)
    static_table = project.serving.precompute(window=None)
    storage["static"] = static_table["bytes"]
    with _Server(project, ServingSpec.model_validate({**base_spec, "mode": "static"})) as base:
        results["static"] = _send(base, requests)
    out = Table(title_justify="left")
    for col in ("mode", "p50 ms", "p99 ms", "answered from the table", "table storage", "errors"):
        out.add_column(col)
    for mode in ("dynamic", "hybrid", "static"):
        r = results[mode]
        out.add_row(
            mode,
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['from_table']:.0%}",
            f"{storage[mode] / 1000:,.0f} kB",
            str(r["errors"]),
        )
    console.print(out)
    p = advice.peakedness
    rec = advice.recommendation
    console.print(
        f"advisor: {advice.requests:,} requests over {p.keys:,} keys ({', '.join(advice.key)}); "
        f"top 10 keys {p.top_share['10']:.1%}, top 100 {p.top_share['100']:.1%}, Gini {p.gini:.2f}; "
        f"a static table of all {advice.universe.keys:,} keys takes {advice.storage.universe_bytes / 1000:,.0f} kB"
    )
    lat = advice.latency
    console.print(
        "  in process: "
        + ", ".join(
            f"{m} {lat[m].median_us:.0f} us median"
            for m in ("dynamic", "hybrid", "static")
            if m in lat
        )
    )
    console.print(f"  recommendation: {rec.mode.upper()}: " + "; ".join(rec.reasons))
    return {
        "modes": results,
        "storage": storage,
        "recommendation": rec.mode,
        "requests": len(requests),
    }


def _top_keys(project: Project, table: pa.Table, key: list[str], n: int) -> list[dict[str, Any]]:
    rt_engine = project.serving.runtime.engine
    rows = rt_engine.parse(
        [
            {k: v for k, v in r.items()} | {"time_hour": r["time_hour"].isoformat()}
            for r in table.to_pylist()
        ]
    )
    counts: dict[tuple[Any, ...], int] = {}
    for r in rows:
        k = tuple(r[c] for c in key)
        counts[k] = counts.get(k, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return [dict(zip(key, k, strict=True)) for k, _ in top]
