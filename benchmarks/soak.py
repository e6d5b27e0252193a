"""Soak: one `loopml serve` worker under mixed traffic for minutes, the champion swapped every
minute.

Traffic (async httpx, ``--connections`` at once): valid one-row ``POST /predict`` bodies, malformed
ones (not JSON, wrong types, a garbage ``_at``, an OIP request that does not fit), oversized
bodies (over ``serving.max_body_bytes``, with and without Content-Length, to ``/predict`` and the
Open Inference Protocol), slow bodies (sent in pieces, complete) and, on one connection of its own,
stalled bodies (half sent, then nothing for ``--stall`` seconds: the server should time out).
Every ``--swap-every`` seconds another version is promoted (forced: the gate is not what is
measured) and the time until the worker serves it is taken from ``/status``.

Printed: requests served, rates by class (2xx, 4xx, 5xx, connection errors) for each kind of
traffic, p50/p99 latency of the valid requests, valid answers given by the fallback (the circuit
breaker), the server's RSS every ``--sample`` seconds, and the verdict against the limits of the
issue: 0 5xx, RSS flat within 10 % after the warm-up (the first sample after ``--warmup``
seconds against the largest after it), and 0 failed valid requests during swaps (from the
promotion until ``--swap-window`` seconds after the worker serves the new version).

    python benchmarks/soak.py [--minutes 10] [--json]

Exit code 0 when every limit holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from loopml import Project
from loopml.demo import table_csv
from loopml.demo._ingest import DEMO_SPEC

KINDS = ("valid", "malformed", "oversized", "slow")
WEIGHTS = (0.78, 0.12, 0.04, 0.06)
CLASSES = ("2xx", "4xx", "5xx", "conn")


BODY_TIMEOUT_S = 5  # the worker's serving.body_timeout: shorter than --stall, so stalls are cut


def spec() -> str:
    """The demo's spec, its worker watching the champion every second and giving a body
    ``BODY_TIMEOUT_S`` seconds to arrive."""
    return DEMO_SPEC.replace(
        "  mode: dynamic\n",
        f"  mode: dynamic\n  watch_interval: 1s\n  body_timeout: {BODY_TIMEOUT_S}s\n",
    )


def setup(root: Path) -> tuple[Project, list[int]]:
    """A demo project with two versions (the first the champion) and its online store and
    static table written."""
    root.mkdir(parents=True)
    (root / "loopml.yaml").write_text(spec())
    project = Project.open(root)
    for name in ("planes", "weather", "flights"):
        project.data.ingest(name, [table_csv(name, root / f"{name}.csv")])
    versions = []
    for month in (3, 4):
        v = project.models.train(as_of=datetime(2013, month, 1, tzinfo=UTC)).version
        assert v is not None
        versions.append(v.version)
    project.models.promote(versions[0], force=True, reason="soak")
    project.features.materialize()
    project.serving.precompute(window=None)
    return project, versions


def request_bodies(project: Project, n: int) -> list[bytes]:
    fs = project.features.feature_set
    table = project.features.build(labelled_only=False).table.slice(20_000, n)
    out = []
    for row in table.to_pylist():
        req = {k: row[k] for k in fs.request}
        req["time_hour"] = row["time_hour"].isoformat()
        out.append(orjson.dumps(req))
    return out


def malformed_bodies(valid: bytes, model: str) -> list[tuple[str, str, bytes]]:
    """(what, path, body) of requests a caller gets wrong: each should get a 4xx."""
    row = orjson.loads(valid)
    oip = f"/v2/models/{model}/infer"
    return [
        ("truncated JSON", "/predict", b"{"),
        ("empty body", "/predict", b""),
        ("a list of numbers", "/predict", b"[1, 2, 3]"),
        ("distance 'far'", "/predict", orjson.dumps({**row, "distance": "far"})),
        ("_at 'x'", "/predict", orjson.dumps({**row, "_at": "x"})),
        ("_at null", "/predict", orjson.dumps({**row, "_at": None})),
        ("rows 'no'", "/predict", orjson.dumps({"rows": "no"})),
        ("OIP input without data", oip, orjson.dumps({"inputs": [{"name": "carrier"}]})),
        ("OIP not JSON", oip, b"not json"),
    ]


@dataclass
class Record:
    kind: str
    start: float
    seconds: float
    cls: str
    status: int | None
    fallback: bool = False
    version: int | None = None
    what: str = ""


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    rss: list[tuple[float, float, int]] = field(default_factory=list)  # (t, MB, requests)
    breaker: list[tuple[float, bool]] = field(default_factory=list)  # (t, open), from /status
    swaps: list[dict[str, Any]] = field(default_factory=list)
    stalls: list[dict[str, Any]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def classify(status: int | None) -> str:
    if status is None:
        return "conn"
    return f"{status // 100}xx" if status < 600 else "5xx"


async def pieces(body: bytes, n: int, pause: float) -> AsyncIterator[bytes]:
    step = max(1, len(body) // n)
    for i in range(0, len(body), step):
        yield body[i : i + step]
        await asyncio.sleep(pause)


async def filler(total: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    piece = b" " * chunk
    sent = 0
    while sent < total:
        yield piece
        sent += chunk


async def one(
    client: httpx.AsyncClient,
    run: Run,
    kind: str,
    rng: random.Random,
    valid: list[bytes],
    malformed: list[tuple[str, str, bytes]],
    limit: int,
    model: str,
    t0: float,
) -> None:
    headers = {"content-type": "application/json"}
    content: Any
    what = ""
    if kind == "valid":
        path, content = "/predict", rng.choice(valid)
    elif kind == "malformed":
        what, path, content = rng.choice(malformed)
    elif kind == "oversized":
        path = rng.choice(["/predict", f"/v2/models/{model}/infer"])
        big = 4 * limit
        # With Content-Length (refusable before reading) or chunked (refused only by counting).
        content = b"{" + b" " * big if rng.random() < 0.5 else filler(big)
    else:  # slow: a complete body in four pieces a quarter second apart
        path, content = "/predict", pieces(rng.choice(valid), 4, 0.25)
    started = time.perf_counter()
    status: int | None = None
    fallback = False
    version = None
    try:
        r = await client.post(path, content=content, headers=headers)
        status = r.status_code
        if kind in ("valid", "slow") and status == 200:
            body = r.json()
            fallback = body.get("fallback") is not None
            version = body.get("version")
        elif status >= 500:
            run.errors[f"{status} {path}: {r.text[:160]}"] += 1
    except httpx.HTTPError as exc:
        run.errors[f"{kind} {path}: {type(exc).__name__}"] += 1
    run.records.append(
        Record(
            kind,
            started - t0,
            time.perf_counter() - started,
            classify(status),
            status,
            fallback,
            version,
            what,
        )
    )


async def worker(client: httpx.AsyncClient, run: Run, end: float, seed: int, **kw: Any) -> None:
    rng = random.Random(seed)
    while time.perf_counter() < end:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        await one(client, run, kind, rng, **kw)


async def staller(base: str, run: Run, end: float, stall: float, valid: bytes, t0: float) -> None:
    """Bodies that stop arriving: half sent, then nothing for ``stall`` seconds."""
    async with httpx.AsyncClient(base_url=base, timeout=stall + 30) as client:
        while time.perf_counter() + stall < end:

            async def half() -> AsyncIterator[bytes]:
                yield valid[: len(valid) // 2]
                await asyncio.sleep(stall)
                yield valid[len(valid) // 2 :]

            started = time.perf_counter()
            status: int | None = None
            error = None
            try:
                r = await client.post(
                    "/predict", content=half(), headers={"content-type": "application/json"}
                )
                status = r.status_code
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            took = time.perf_counter() - started
            run.stalls.append(
                {
                    "start": started - t0,
                    "seconds": round(took, 2),
                    "status": status,
                    "error": error,
                    # The server gave up on the body: a 408, or the connection it closed. The
                    # client cannot read the 408 while its body is suspended, so it learns of it
                    # when it resumes (a read error); a server that waited answers 200.
                    "cut_off": status == 408 or (status is None and error != "ReadTimeout"),
                }
            )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sampler(base: str, pid: int, run: Run, end: float, every: float, t0: float) -> None:
    """The server's RSS every ``every`` seconds; its breaker's state every second."""
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        next_rss = time.perf_counter()
        while time.perf_counter() < end:
            now = time.perf_counter()
            if now >= next_rss:
                run.rss.append((now - t0, rss_mb(pid), len(run.records)))
                next_rss += every
            try:
                status = (await client.get("/status")).json()
                run.breaker.append((now - t0, bool(status.get("breaker_open"))))
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(min(1.0, max(0.0, end - time.perf_counter())))
        run.rss.append((time.perf_counter() - t0, rss_mb(pid), len(run.records)))


async def swapper(
    base: str,
    project: Project,
    versions: list[int],
    run: Run,
    end: float,
    every: float,
    t0: float,
) -> None:
    """Promote the other version every ``every`` seconds; time until the worker serves it."""
    i = 1
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while time.perf_counter() + every < end:
            await asyncio.sleep(every)
            target = versions[i % len(versions)]
            i += 1
            at = time.perf_counter()
            await asyncio.to_thread(project.models.promote, target, force=True, reason="soak swap")
            served_at = None
            while time.perf_counter() - at < 30:
                status = (await client.get("/status")).json()
                if status["serving"]["version"] == target:
                    served_at = time.perf_counter()
                    break
                await asyncio.sleep(0.05)
            run.swaps.append(
                {
                    "version": target,
                    "at": at - t0,
                    "served_after_s": None if served_at is None else round(served_at - at, 2),
                }
            )


async def soak(base: str, pid: int, project: Project, versions: list[int], a: Any) -> Run:
    valid = request_bodies(project, 500)
    model = project.models.name
    malformed = malformed_bodies(valid[0], model)
    limit = project.spec.serving.max_body_bytes
    run = Run()
    t0 = time.perf_counter()
    end = t0 + a.minutes * 60
    limits = httpx.Limits(max_connections=a.connections, max_keepalive_connections=a.connections)
    async with httpx.AsyncClient(base_url=base, timeout=a.timeout, limits=limits) as client:
        kw = dict(valid=valid, malformed=malformed, limit=limit, model=model, t0=t0)
        tasks = [worker(client, run, end, seed=i, **kw) for i in range(a.connections)]
        tasks.append(sampler(base, pid, run, end, a.sample, t0))
        tasks.append(swapper(base, project, versions, run, end, a.swap_every, t0))
        if a.stall > 0:
            tasks.append(staller(base, run, end, a.stall, valid[1], t0))
        await asyncio.gather(*tasks)
    return run


def report(run: Run, a: Any, seconds: float) -> dict[str, Any]:
    by_kind: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    for r in run.records:
        by_kind[r.kind][r.cls] += 1
    valid = [r for r in run.records if r.kind == "valid"]
    lat = sorted(r.seconds * 1000 for r in valid if r.cls == "2xx")

    def pct(q: float) -> float | None:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None

    # Swap windows: from the promotion until --swap-window seconds after the worker served it.
    windows = [
        (s["at"], s["at"] + (s["served_after_s"] or 30.0) + a.swap_window) for s in run.swaps
    ]
    in_swaps = [r for r in valid if any(lo <= r.start <= hi for lo, hi in windows)]
    failed_in_swaps = sum(r.cls != "2xx" for r in in_swaps)
    after = [m for t, m, _ in run.rss if t >= a.warmup]
    base_mb = after[0] if after else None
    growth = (max(after) - base_mb) / base_mb if after and base_mb else None
    total = Counter(r.cls for r in run.records)
    malformed: dict[str, Counter[str]] = {}
    for r in run.records:
        if r.kind == "malformed":
            malformed.setdefault(r.what, Counter())[str(r.status or "conn")] += 1
    out = {
        "minutes": a.minutes,
        "seconds": round(seconds, 1),
        "requests": len(run.records),
        "rps": round(len(run.records) / seconds, 1),
        "classes": dict(total),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "valid_p50_ms": pct(0.50),
        "valid_p99_ms": pct(0.99),
        "valid_fallback": sum(r.fallback for r in valid),
        "malformed": {k: dict(v) for k, v in malformed.items()},
        "breaker_open_share": (
            sum(o for _, o in run.breaker) / len(run.breaker) if run.breaker else None
        ),
        "rss_mb": [(round(t, 1), round(m, 1), n) for t, m, n in run.rss],
        "rss_growth_after_warmup": growth,
        "swaps": run.swaps,
        "valid_in_swaps": len(in_swaps),
        "failed_in_swaps": failed_in_swaps,
        "stalls": run.stalls,
        "errors": dict(run.errors.most_common(12)),
    }
    out["verdict"] = {
        "no_5xx": total["5xx"] == 0,
        "memory_flat_10pct": growth is not None and growth <= 0.10,
        "no_failed_request_during_swaps": failed_in_swaps == 0 and bool(run.swaps),
        # A body that stops arriving holds no worker: each is cut off (408) before it resumes.
        "stalled_bodies_cut_off": all(s["cut_off"] for s in run.stalls),
    }
    return out


def show(r: dict[str, Any]) -> None:
    print(
        f"soak: {r['minutes']} min, one worker, {r['requests']:,} requests ({r['rps']:,} req/s), "
        f"{len(r['swaps'])} swaps"
    )
    print(f"{'':<12}" + "".join(f"{c:>10}" for c in (*CLASSES, "total")))
    for kind, counts in (*r["by_kind"].items(), ("all", r["classes"])):
        n = sum(counts.values())
        cells = "".join(f"{(counts.get(c, 0) / n if n else 0):>10.2%}" for c in CLASSES)
        print(f"{kind:<12}{cells}{n:>10,}")
    print(
        f"valid: p50 {r['valid_p50_ms']:.2f} ms, p99 {r['valid_p99_ms']:.2f} ms; "
        f"{r['valid_fallback']:,} answered by the fallback"
        if r["valid_p99_ms"] is not None
        else "valid: none answered"
    )
    if r["breaker_open_share"] is not None:
        print(f"circuit breaker open in {r['breaker_open_share']:.0%} of the /status samples")
    print("malformed requests by status:")
    for what, statuses in sorted(r["malformed"].items()):
        print(f"  {what:<24}" + ", ".join(f"{k} x{v}" for k, v in sorted(statuses.items())))
    for s in r["swaps"]:
        print(
            f"  swap at {s['at']:6.1f} s to version {s['version']}: served after {s['served_after_s']} s"
        )
    cut = sum(s["cut_off"] for s in r["stalls"])
    if r["stalls"]:
        print(
            f"stalled bodies: {len(r['stalls'])}, cut off by the server: {cut}; outcomes "
            + ", ".join(
                f"{k} x{v}"
                for k, v in Counter(
                    str(s["status"] or s["error"]) + f" after {s['seconds']:.0f} s"
                    for s in r["stalls"]
                ).items()
            )
        )
    print("server RSS (s, MB, requests so far):")
    for t, m, n in r["rss_mb"]:
        print(f"  {t:7.1f} s {m:9.1f} MB {n:>10,}")
    if r["errors"]:
        print("errors seen (most common):")
        for k, v in r["errors"].items():
            print(f"  {v:>6} x {k}")
    g = r["rss_growth_after_warmup"]
    v = r["verdict"]
    print("verdict:")
    print(f"  0 5xx: {'PASS' if v['no_5xx'] else 'FAIL'} ({r['classes'].get('5xx', 0)})")
    print(
        f"  memory flat within 10 % after warm-up: {'PASS' if v['memory_flat_10pct'] else 'FAIL'}"
        + (f" ({g:+.1%})" if g is not None else " (no sample after the warm-up)")
    )
    print(
        f"  0 failed requests during swaps: "
        f"{'PASS' if v['no_failed_request_during_swaps'] else 'FAIL'} "
        f"({r['failed_in_swaps']} of {r['valid_in_swaps']} valid requests in swap windows)"
    )
    cut = sum(s["cut_off"] for s in r["stalls"])
    print(
        f"  stalled bodies cut off by the server: "
        f"{'PASS' if v['stalled_bodies_cut_off'] else 'FAIL'} ({cut} of {len(r['stalls'])})"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--swap-every", type=float, default=60.0, help="seconds between promotions")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS is compared")
    ap.add_argument("--swap-window", type=float, default=2.0)
    ap.add_argument(
        "--stall", type=float, default=20.0, help="seconds a stalled body waits; 0: none"
    )
    ap.add_argument("--timeout", type=float, default=30.0, help="client timeout per request")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    a.warmup = min(a.warmup, a.minutes * 60 / 4)
    with tempfile.TemporaryDirectory(prefix="loopml-soak-") as tmp:
        root = Path(tmp) / "p"
        print("setting up the demo project (two versions) ...", file=sys.stderr)
        project, versions = setup(root)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "loopml.cli", "serve", "--port", str(port), "-p", str(root)],
            env={**os.environ},
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "server.log", "wb"),  # noqa: SIM115 - closed with the folder
        )
        try:
            deadline = time.time() + 120
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit(
                        "the server did not become ready: "
                        + (Path(tmp) / "server.log").read_text()[-2000:]
                    )
                time.sleep(0.2)
            print(f"soaking for {a.minutes} min ...", file=sys.stderr)
            started = time.perf_counter()
            run = asyncio.run(soak(base, server.pid, project, versions, a))
            seconds = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
            project.close()
        result = report(run, a, seconds)
        if a.json:
            print(json.dumps(result, default=str))
        else:
            show(result)
        log = (Path(tmp) / "server.log").read_text()
        if "Traceback" in log:
            print("the server logged tracebacks:\n" + log[-3000:], file=sys.stderr)
    return 0 if all(result["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
